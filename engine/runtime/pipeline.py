"""From a decoded event to decisions and planned actions: the one path that dry-run and
the receiver share, so a dry-run shows exactly what serving would do."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.rules.budget import Budget, Clock
from engine.rules.compiled import CompiledRule, RuleSet
from engine.rules.templates import Templates
from engine.rules.trust import HostTrust, hosts_in_values
from engine.runtime.event_view import EventView
from engine.runtime.limits import Limits
from engine.runtime.matcher import Decision, Decisions, decide, decide_closing, decide_indexed
from engine.runtime.payloads import Event
from engine.runtime.planner import PlannedAction, plan_actions
from engine.runtime.sessions import FiringGate, Session, SessionStore
from engine.runtime.user_values import UserValues, placeholder_user
from engine.secrets import Secrets
from engine.triggers import default_triggers

# a user's settings (engine.server.user_settings.UserValues) by uid; read per event
UserLookup = Callable[[str], UserValues]

log = logging.getLogger("omi_rules.pipeline")


def user_hosts(rule: CompiledRule, user: UserValues) -> frozenset[str]:
    """Hosts of the user's own `type: url` settings the rule declares: the user chose them
    for their own events, so they are not payload text (the outbound guard still lets them
    reach public addresses only, unless outbound_allow_hosts names them)."""
    urls = [user.values[s.name] for s in rule.settings if s.type == "url" and s.name in user.values]
    return hosts_in_values(urls)


SWEEP_SECONDS = 60.0
NO_NEW_SEGMENTS = "no new segments (all were sent before)"
FIRING_MEMORY = 24 * 3600.0  # once_per_session holds at least this long


@dataclass
class Outcome:
    event: Event
    decisions: Sequence[Decision] = field(default_factory=list)
    actions: list[PlannedAction] = field(default_factory=list)
    rules_version: str = ""  # which rules decided (RuleSet.version)
    # the user's settings the rules read (their secrets are sealed with the requests)
    user: UserValues | None = None

    @property
    def matched(self) -> list[Decision]:
        if isinstance(self.decisions, Decisions):
            return self.decisions.matched  # without explaining the rules the index left out
        return [d for d in self.decisions if d.matched]

    @property
    def wait_until(self) -> float | None:
        """The earliest time a rule waits until for a keyword slot still being spoken
        (when to raise a closing evaluation), among the decisions made: rules the index
        left out wait on nothing and are not explained for this."""
        made = self.decisions.visited if isinstance(self.decisions, Decisions) else self.decisions
        return min((d.wait_until for d in made if d.wait_until is not None), default=None)

    @property
    def skipped(self) -> list[Decision]:
        return [d for d in self.decisions if not d.matched]

    def inline_reply(self) -> str | None:
        """The actions' inline replies (Connector.inline_reply), joined, for the webhook
        response."""
        text = "\n".join(a.reply for a in self.actions if a.reply)
        return text or None


class Pipeline:
    """Holds the live rules and the transcript sessions; `process` runs one event."""

    def __init__(
        self,
        rules: RuleSet,
        secrets: Secrets,
        *,
        templates: Templates | None = None,
        dry_run: bool = False,
        data_dir: str = "data",
        sessions: SessionStore | None = None,
        allow_hosts: Sequence[str] = (),
        limits: Limits | None = None,
        clock: Clock = time.monotonic,
        indexed: bool = True,
        check_secrets: bool | None = None,
        gate: FiringGate | None = None,
        user_settings: UserLookup | None = None,
    ) -> None:
        self.rules = rules
        # serving: each user's settings (`user.settings`); None: placeholders (dry-run)
        self.user_settings = user_settings
        # False visits every rule (matcher.decide): the reference the rule index agrees with
        self.indexed = indexed
        self.secrets = secrets
        self.allow_hosts = tuple(allow_hosts)
        self._trust: tuple[Secrets, HostTrust] | None = None
        self.limits = limits or Limits()
        self.clock = clock  # for time budgets (tests inject one)
        self.templates = templates or Templates(
            render_budget_ms=self.limits.render_budget_ms, clock=clock
        )
        self.dry_run = dry_run
        # serving skips a rule whose secrets are unset; a dry-run shows what it would send,
        # unless it replays what serving decided (engine.server.why_not)
        self.check_secrets = not dry_run if check_secrets is None else check_secrets
        self.data_dir = data_dir
        # not `sessions or ...`: an empty store is falsy (it has a length)
        self.sessions = (
            sessions if sessions is not None else SessionStore(limits=self.limits.sessions)
        )
        self.gate = gate if gate is not None else FiringGate()
        self._next_sweep = 0.0

    def sweep(self, now: float) -> None:
        """Forget idle sessions and old firings, so memory stays bounded on a long run."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        if not self.sessions.shared:  # shared: only a sweep holding a session ends it
            self.sessions.expire(now)
        longest = max((r.cooldown or 0.0 for r in self.rules.rules), default=0.0)
        self.gate.forget_before(now - max(longest, self.sessions.idle_seconds, FIRING_MEMORY))

    def trust(self) -> HostTrust:
        """Hosts of the secrets and `outbound_allow_hosts` (the rules add their own)."""
        if self._trust is None or self._trust[0] is not self.secrets:
            self._trust = (
                self.secrets,
                HostTrust(hosts_in_values(self.secrets.plain_values()), self.allow_hosts),
            )
        return self._trust[1]

    def trusts(self, host: str) -> bool:
        """Whether any loaded rule, a secret or the allow list names `host` (send time)."""
        return self.trust().including(self.rules.trusted_hosts)(host)

    def missing_secrets(self, rule: CompiledRule) -> list[str]:
        return self.secrets.missing(rule.secrets) if self.check_secrets else []

    def process(
        self,
        event: Event,
        now: float | None = None,
        *,
        closing: bool = False,
        ended: Session | None = None,
    ) -> Outcome:
        """One event; `closing` (or `event.closing`) is a closing evaluation of its session
        (engine.rules.slots): no new segments are taken from it, and only open keyword
        slots may fire. `ended` closes the slots of a session that ended (any wait over)."""
        now = time.time() if now is None else now
        closing = closing or event.closing or ended is not None
        self.sweep(now)
        rules = self.rules.for_trigger(event.trigger)
        outcome = Outcome(event, rules_version=self.rules.version)
        session_key = ""
        session_segments = None
        first_new = 0
        last_heard = previous_heard = closed_at = None
        session: Session | None = None
        live = default_triggers()[event.trigger].live_sessions
        if live and closing:  # not a call: the session is not heard from
            session = ended or self.sessions.get(event.uid, event.session_id)
            if session is None:
                outcome.decisions = []  # it ended or was evicted; nothing is open
                return outcome
            last_heard = session.heard or now
            if session.closed_at is not None and session.closed_at >= last_heard:
                closed_at = session.closed_at  # since the last speech: what it closed is old
            session.closed_at = now
            if ended is None:
                self.sessions.note("saved", session)
            session_key = session.key
            session_segments = session.segments
            first_new = len(session.segments)
        elif live:
            held = self.sessions.get(event.uid, event.session_id)
            heard_before = held.heard if held is not None else 0.0
            observation = self.sessions.observe(
                event.uid, event.session_id, event.doc.get("segments") or [], now
            )
            if not observation.has_new:
                # made only when read: a resent call costs nothing per rule
                outcome.decisions = Decisions(
                    rules, {}, lambda i: Decision(rules[i], False, NO_NEW_SEGMENTS)
                )
                return outcome
            session = observation.session
            if session is held and heard_before:
                previous_heard = heard_before
                if session.closed_at is not None and session.closed_at >= heard_before:
                    closed_at = session.closed_at  # what it closed is old now
            last_heard = session.heard
            session_key = session.key
            session_segments = session.segments
            first_new = observation.first_new
        user = outcome.user = self._user(event)
        view = EventView(
            event,
            self.templates,
            secrets=self.secrets.view(placeholders=self.dry_run),
            user=user.template_view() if user is not None else placeholder_user(event.uid),
            now=now,
            session_segments=session_segments,
            first_new_segment=first_new,
            max_text=self.limits.match_max_text,
            budget=Budget(
                rule_ms=self.limits.match_budget_ms,
                event_ms=self.limits.event_budget_ms,
                clock=self.clock,
            ),
            closing=closing,
            last_heard=last_heard,
            previous_heard=previous_heard,
            closed_at=closed_at,
            session_ended=ended is not None,
        )

        def gate(rule: CompiledRule) -> str | None:
            once = rule.spec.once_per_session and live
            if not once and rule.cooldown is None:
                return None
            return self.gate.refusal(
                rule.id, event.uid, session_key, once=once, cooldown=rule.cooldown, now=now
            )

        if closing:
            outcome.decisions = decide_closing(
                rules,
                view,
                gate=gate,
                missing_secrets=self.missing_secrets,
                for_each_limit=self.limits.for_each_limit,
                unready=self._unready(user),
            )
        elif self.indexed:
            outcome.decisions = decide_indexed(
                self.rules.index_for(event.trigger),
                view,
                gate=gate,
                missing_secrets=self.missing_secrets,
                for_each_limit=self.limits.for_each_limit,
                unready=self._unready(user),
            )
        else:
            outcome.decisions = decide(
                rules,
                view,
                gate=gate,
                missing_secrets=self.missing_secrets,
                for_each_limit=self.limits.for_each_limit,
                unready=self._unready(user),
            )
        if session is not None and ended is None:  # when to close its open slots
            session.waiting_until = outcome.wait_until
        secret = self.secrets.lookup(placeholders=self.dry_run)
        for decision in outcome.matched:
            rule = decision.rule
            if rule.cooldown is not None or (rule.spec.once_per_session and live):
                # only what the gate asks about is remembered (and stored: every firing
                # would be one more row write per event, the same row for a busy user)
                self.gate.fired(rule.id, event.uid, session_key, now)
            trusted = decision.rule.trusted_hosts
            if user is not None and decision.rule.settings:
                trusted = trusted | user_hosts(decision.rule, user)
            outcome.actions.extend(
                plan_actions(
                    decision,
                    view,
                    secret=secret,
                    has_secret=self.secrets.has,
                    data_dir=self.data_dir,
                    trusted=self.trust().including(trusted),
                )
            )
        return outcome

    def _user(self, event: Event) -> UserValues | None:
        """The event's user's settings when serving and a rule of its trigger declares some."""
        if self.user_settings is None or event.trigger not in self.rules.settings_triggers:
            return None
        return self.user_settings(event.uid)

    def _unready(self, user: UserValues | None) -> Callable[[CompiledRule], str | None]:
        def unready(rule: CompiledRule) -> str | None:
            if user is None or not rule.required_settings or not self.check_secrets:
                return None
            missing = user.missing(rule.required_settings)
            if not missing:
                return None
            return f"user {user.uid} has not set {', '.join(missing)} (setup)"

        return unready
