"""Sample Omi webhook payloads shipped with the package: for the tour, tests and dry-runs.

`omi-rules example <trigger>` prints one; `sample_path` finds a file by name."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent

# trigger -> the sample `omi-rules example <trigger>` prints
DEFAULTS: dict[str, str] = {
    "memory": "memory-work.json",
    "transcript": "transcript-call-1.json",
    "audio": "audio-speech-16k.pcm",
    "day_summary": "day-summary.json",
    "transcript_session_end": "session-end.json",
    "audio_speech_start": "speech-start.json",
    "audio_speech_end": "speech-end.json",
}

# every sample, by file name -> its trigger
SAMPLES: dict[str, str] = {
    "memory-work.json": "memory",
    "memory-personal-discarded.json": "memory",
    "memory-extra-fields.json": "memory",
    "memory-backend-shape.json": "memory",
    "transcript-call-1.json": "transcript",
    "transcript-call-2.json": "transcript",
    "transcript-call-3.json": "transcript",
    "transcript-app-shape.json": "transcript",
    "day-summary.json": "day_summary",
    "day-summary-legacy.json": "day_summary",
    "audio-speech-16k.pcm": "audio",
    "audio-silence-16k.pcm": "audio",
    "session-end.json": "transcript_session_end",
    "speech-start.json": "audio_speech_start",
    "speech-end.json": "audio_speech_end",
}


def trigger_name(trigger: str) -> str:
    """`day-summary` (the URL spelling) and `day_summary` (the rule spelling) are one trigger
    (and `transcript-session-end` is `transcript_session_end`)."""
    name = trigger.replace("-", "_")
    if name not in DEFAULTS:
        raise KeyError(f"unknown trigger {trigger!r}; one of {', '.join(DEFAULTS)}")
    return name


def sample_name(name: str) -> str:
    """A sample's file name; the extension may be left off (`memory-personal-discarded`)."""
    if name in SAMPLES:
        return name
    for suffix in (".json", ".pcm"):
        if name + suffix in SAMPLES:
            return name + suffix
    raise KeyError(f"no sample {name!r}; `omi-rules example --list` shows them")


def sample_path(name: str) -> Path:
    return SAMPLES_DIR / sample_name(name)


def sample_bytes(name: str) -> bytes:
    return sample_path(name).read_bytes()


def is_binary(name: str) -> bool:
    return sample_name(name).endswith(".pcm")


def pick(trigger: str | None, name: str | None) -> str:
    """The sample to print: `name` if given (it must be of `trigger`), else the trigger's."""
    if name is None:
        if trigger is None:
            raise KeyError(
                "give a trigger (memory, transcript, audio, day-summary, "
                "transcript-session-end) or --name"
            )
        return DEFAULTS[trigger]
    chosen = sample_name(name)
    if trigger is not None and SAMPLES[chosen] != trigger:
        raise KeyError(f"{chosen} is a {SAMPLES[chosen]} sample, not {trigger}")
    return chosen
