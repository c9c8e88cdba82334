"""Every error omi-rules raises on purpose.

    OmiRulesError
    ├── RuleError          a rule file is wrong: carries file, line, column, rule id and the
    │                      path inside the rule (raised while loading and validating rules)
    ├── PayloadError       a webhook body is not what its trigger takes (answered with a 4xx)
    │   └── Unauthorized   (engine.server.webhook_auth) signature or token missing or wrong: 401
    ├── TemplateError      a template failed while rendering: carries rule id and field
    │   └── SecretError    a template asked for a secret that is not set
    ├── ConfigError        (engine.config) the config file or an OMI_RULES_* variable is wrong
    ├── RuleEditError      (engine.rules.rule_files) an edit of the rules folder was refused:
    │   │                  carries file and rule id
    │   ├── RuleNotFound   no rule file of the folder defines that rule id
    │   ├── RuleConflict   the file changed on disk since it was read: carries its etag and text
    │   └── BadRuleName    a file name or rule id that may not be written (path traversal,
    │                      not a .yaml name, a *.test.yaml name, or already taken)
    └── DeliveryError      a connector's send failed: carries connector, status, url, retryable

Messages name the file, line, rule and value so the reader never has to guess where.
"""

from __future__ import annotations


class OmiRulesError(Exception):
    """Base class of every error raised on purpose by omi-rules."""


class RuleError(OmiRulesError):
    """A rule file is wrong; raised while loading or validating rules."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        line: int = 0,
        column: int = 0,
        rule_id: str | None = None,
        where: str = "",
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.rule_id = rule_id
        self.where = where
        super().__init__(str(self))

    def __str__(self) -> str:
        location = self.file or "<rules>"
        if self.line:
            location += f":{self.line}:{self.column}"
        rule = f" rule {self.rule_id}:" if self.rule_id else ""
        return f"{location}:{rule} {self.message}"


class PayloadError(OmiRulesError):
    """A webhook body is not what its trigger takes; `status` is the HTTP answer (4xx)."""

    def __init__(self, reason: str, *, trigger: str = "", status: int = 400) -> None:
        self.reason = reason
        self.trigger = trigger
        self.status = status
        super().__init__(f"{trigger} payload: {reason}" if trigger else reason)


class TemplateError(OmiRulesError):
    """A template failed while rendering (undefined variable, sandbox refusal, too long)."""

    def __init__(self, message: str, *, rule_id: str = "", field: str = "") -> None:
        self.message = message
        self.rule_id = rule_id
        self.field = field
        where = f"rule {rule_id}: " if rule_id else ""
        where += f"{field}: " if field else ""
        super().__init__(f"{where}{message}")


class SecretError(TemplateError):
    """A template asked for a secret that is not configured."""


class DeliveryError(OmiRulesError):
    """A connector could not deliver; `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        connector: str,
        status: int | None = None,
        url: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.connector = connector
        self.status = status
        self.url = url
        self.retryable = retryable
        self.retry_after = retry_after
        parts = [connector]
        if status is not None:
            parts.append(f"HTTP {status}")
        if url:
            parts.append(url)
        super().__init__(f"{' '.join(parts)}: {message}")


class RuleEditError(OmiRulesError):
    """An edit of the rules folder (engine.rules.rule_files) was refused."""

    def __init__(self, message: str, *, file: str = "", rule_id: str = "") -> None:
        self.message = message
        self.file = file
        self.rule_id = rule_id
        super().__init__(message)


class RuleNotFound(RuleEditError):
    """No rule file of the folder defines the rule id asked for."""


class RuleConflict(RuleEditError):
    """The rule's file changed on disk since it was read (its etag differs): not overwritten.

    `etag` and `text` are the file's current ones (`text`: the rule's own text, as read()
    gives it, or "" when the rule is no longer in the file) so the editor can show them.
    """

    def __init__(
        self, message: str, *, file: str = "", rule_id: str = "", etag: str = "", text: str = ""
    ) -> None:
        self.etag = etag
        self.text = text
        super().__init__(message, file=file, rule_id=rule_id)


class BadRuleName(RuleEditError):
    """A file name or rule id that may not be written: outside the rules folder, not
    `[A-Za-z0-9._-]+.yaml`, a `*.test.yaml` case file, or already taken."""


class SettingsTaken(OmiRulesError):
    """A first save of per-user settings (without the admin token) for a uid that already
    has some stored: refused, so no one adds a destination next to another's secret."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        super().__init__(f"uid {uid!r} already has settings")


class TooManyUsers(OmiRulesError):
    """A first save for a new uid when `limit` uids already have settings stored."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"this server holds settings for {limit} users, its limit; ask its owner")
