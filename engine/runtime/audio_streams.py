"""Audio streams: when someone starts and stops talking, and the utterance as a WAV file.

A stream is one (uid, session_id) of the audio webhook (the uid alone when Omi names no
session). Each chunk's voice-activity frames (engine.runtime.audio_features) drive a small
state machine with hysteresis: `speech_start` seconds of unbroken speech start an utterance
(`audio_speech_start`), `speech_end` seconds of silence end it (`audio_speech_end`).

While an utterance is open (and a rule wants the files: `write_files`) its audio is
appended, chunk by chunk, to a WAV under
`data/audio/utterances/<uid>/`, so nothing of it is kept in memory and an action that needs
it later (an `http` action with `body_audio: utterance`, delivered by the outbox) reads the
file. An utterance reaching `max_utterance` seconds ends there (`ended_by: max_duration`)
and the speech that goes on starts a new one. Memory is bounded: a few numbers per stream,
at most `max_streams` streams (the least recently heard is dropped first) and
`max_streams_per_uid` of one uid (its own least recently heard first), and a stream not
heard for `stream_idle` is dropped; an utterance open in a dropped stream ends
(`ended_by: idle` or `evicted`). State is in memory only: a restart forgets open utterances.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.config import AudioSettings
from engine.paths import UTTERANCES, data_file, file_name_part, inside_data
from engine.runtime.audio_features import FRAME_MS
from engine.runtime.payloads import Event
from engine.wav import append_wav, prune_older, truncate_wav

log = logging.getLogger("omi_rules.audio")

SPEECH_START = "audio_speech_start"
SPEECH_END = "audio_speech_end"
FRAME_S = FRAME_MS / 1000
PRUNE_EVERY = 3600.0  # seconds between two sweeps of old utterance files
TAIL_S = 1.0  # seconds of a chunk's end kept while speech begins (speech_start, at most)


@dataclass
class Utterance:
    path: str  # relative to the data folder; "" when no file is written (write_files)
    started_at_s: float  # stream time where the speech began
    bytes: int = 0  # of audio: written to the file, or (no file) that belong to it
    speech_s: float = 0.0


@dataclass
class Stream:
    uid: str
    session_id: str
    sample_rate: int
    heard_at: float = 0.0
    duration_s: float = 0.0  # audio heard so far
    speech_run_s: float = 0.0  # unbroken speech at the end of what was heard
    silence_run_s: float = 0.0  # unbroken silence at the end of what was heard
    utterance: Utterance | None = None
    # the end of the last chunk while speech was beginning (no utterance yet): at most
    # TAIL_S seconds, the start of an utterance confirmed in the next chunk
    tail: bytes = b""
    fed: int = 0  # chunks fed so far

    @property
    def speaking(self) -> bool:
        """Speech started and not ended yet: an utterance is open."""
        return self.utterance is not None


@dataclass
class FeedUndo:
    """What one feed changed, to put back when its chunk was not recorded (a 503: Omi
    sends it again, and it must not be followed twice): the stream as it was (None: it
    did not exist) and the utterance files' audio bytes before (0: the file was new)."""

    key: tuple[str, str]
    before: Stream | None
    after: Stream | None = None  # the stream the feed left (undone only if still current)
    fed: int = 0  # its chunk count then (undone only if not fed since)
    files: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SpeechChange:
    """A derived event to raise: `trigger` (SPEECH_START or SPEECH_END) and its document."""

    trigger: str
    uid: str
    session_id: str
    doc: dict[str, Any]


@dataclass
class AudioStreams:
    settings: AudioSettings
    data_dir: str
    _streams: dict[tuple[str, str], Stream] = field(default_factory=dict)
    _counter: int = 0
    _pruned_at: float = 0.0
    # utterance WAVs are written only while a rule wants them (an enabled rule on
    # audio_speech_end; set by the receiver): otherwise no audio is kept
    write_files: bool = True
    _undo: FeedUndo | None = None  # the feed in progress
    last_undo: FeedUndo | None = None  # what the last feed changed (see `undo`)

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[Stream]:
        return iter(list(self._streams.values()))

    def feed(self, event: Event, now: float) -> list[SpeechChange]:
        """Follow one decoded audio chunk: sets its `session_duration_s` and `speaking`
        (the chunk is part of an utterance), returns the speech starts and ends it made."""
        doc = event.doc
        rate = int(doc["sample_rate"])
        key = (event.uid, event.session_id)
        changes: list[SpeechChange] = []
        stream = self._streams.pop(key, None)
        self._undo = FeedUndo(key, _copy(stream))
        if stream is not None and stream.sample_rate != rate:  # a new stream, in effect
            changes.extend(self._close(stream, "rate_change"))
            stream = None
        if stream is None:
            stream = Stream(event.uid, event.session_id, rate)
            own = [k for k in self._streams if k[0] == event.uid]  # the oldest first
            for oldest in own[: max(0, len(own) - self.settings.max_streams_per_uid + 1)]:
                changes.extend(self._close(self._streams.pop(oldest), "evicted"))
            while len(self._streams) >= self.settings.max_streams:
                oldest = next(iter(self._streams))
                changes.extend(self._close(self._streams.pop(oldest), "evicted"))
        self._streams[key] = stream  # the most recently heard last
        stream.heard_at = now
        pcm = event.audio or b""
        utterance = stream.utterance
        max_bytes = int(self.settings.max_utterance * rate) * 2
        if utterance is not None and utterance.bytes + len(pcm) > max_bytes:
            changes.extend(self._close(stream, "max_duration"))
        offset = stream.duration_s
        in_utterance = stream.utterance is not None
        for index, voiced in enumerate(event.voiced):
            at_s = offset + (index + 1) * FRAME_S
            changes.extend(self._step(stream, bool(voiced), at_s, pcm, offset))
            in_utterance = in_utterance or stream.utterance is not None
        if stream.utterance is not None:  # open at the chunk's end: the rest is part of it
            self._take(stream, pcm, offset, None)
        stream.tail = self._tail(stream, pcm)
        stream.duration_s = offset + len(pcm) / 2 / rate
        doc["session_duration_s"] = round(stream.duration_s, 6)
        doc["speaking"] = in_utterance
        stream.fed += 1
        self._undo.after, self._undo.fed = stream, stream.fed
        self.last_undo, self._undo = self._undo, None
        return changes

    def undo(self, undo: FeedUndo) -> bool:
        """Put back what one feed changed (its chunk was not recorded): the stream, and
        the utterance files cut back to their size before. Not when the stream has been
        fed since (or dropped): False then."""
        current = self._streams.get(undo.key)
        if current is None or current is not undo.after or current.fed != undo.fed:
            log.warning("audio stream %s fed again since a failed chunk: not undone", undo.key)
            return False
        if undo.before is None:
            del self._streams[undo.key]
        else:
            self._streams[undo.key] = undo.before
        for relative, size in undo.files.items():
            try:
                path = inside_data(self.data_dir, data_file(self.data_dir, relative))
                truncate_wav(Path(path), size)
            except (OSError, ValueError) as exc:
                log.error("could not cut utterance %s back: %s", relative, exc)
        return True

    def _step(
        self, stream: Stream, voiced: bool, at_s: float, pcm: bytes, offset: float
    ) -> list[SpeechChange]:
        """One frame ending at stream time `at_s`, of the chunk `pcm` (which starts at
        stream time `offset`)."""
        if voiced:
            stream.speech_run_s += FRAME_S
            stream.silence_run_s = 0.0
            if stream.utterance is not None:
                stream.utterance.speech_s += FRAME_S
        else:
            stream.silence_run_s += FRAME_S
            stream.speech_run_s = 0.0
        if not stream.speaking and stream.speech_run_s >= self.settings.speech_start - 1e-9:
            return [self._open(stream, at_s - stream.speech_run_s)]
        if stream.speaking and stream.silence_run_s >= self.settings.speech_end - 1e-9:
            self._take(stream, pcm, offset, at_s)  # its part of the chunk, up to this frame
            return self._close(stream, "silence", ended_at_s=at_s - stream.silence_run_s)
        return []

    def _take(self, stream: Stream, pcm: bytes, offset: float, until_s: float | None) -> None:
        """Append to the open utterance its part of the chunk `pcm` (which starts at stream
        time `offset`): from the utterance's first frame (or the chunk's start) to stream
        time `until_s` (or the chunk's end). Only that part: a chunk holding several
        utterances writes each its own audio, not the whole chunk each time."""
        utterance = stream.utterance
        if utterance is None:
            return
        rate = stream.sample_rate
        first = max(0.0, utterance.started_at_s - offset)
        start = min(len(pcm), round(first * rate) * 2)
        end = len(pcm) if until_s is None else min(len(pcm), round((until_s - offset) * rate) * 2)
        before = b""
        if not utterance.bytes and utterance.started_at_s < offset and stream.tail:
            # the speech began in the previous chunk: its start is in the kept tail
            wanted = round((offset - utterance.started_at_s) * rate) * 2
            before = stream.tail[-wanted:] if wanted > 0 else b""
        if end > start or before:
            self._append(utterance, before + pcm[start:end], rate)

    def _tail(self, stream: Stream, pcm: bytes) -> bytes:
        """What to keep of the chunk just fed: while speech is beginning (a run shorter
        than speech_start, no utterance yet), the audio of that run, so an utterance the
        next chunk confirms starts where the speech did. Nothing otherwise."""
        if stream.utterance is not None or stream.speech_run_s <= 0:
            return b""
        seconds = min(stream.speech_run_s, self.settings.speech_start, TAIL_S) + FRAME_S
        wanted = round(seconds * stream.sample_rate) * 2
        return (stream.tail + pcm)[-wanted:] if len(pcm) < wanted else pcm[-wanted:]

    def _open(self, stream: Stream, started_at_s: float) -> SpeechChange:
        self._counter += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{file_name_part(stream.session_id or 'stream')}-{stamp}-{self._counter}.wav"
        path = os.path.join(UTTERANCES, file_name_part(stream.uid), name)
        if not self.write_files:
            path = ""  # followed, not kept
        stream.utterance = Utterance(path, started_at_s, speech_s=stream.speech_run_s)
        doc = {
            "uid": stream.uid,
            "session_id": stream.session_id,
            "sample_rate": stream.sample_rate,
            "started_at_s": round(max(0.0, started_at_s), 3),
        }
        return SpeechChange(SPEECH_START, stream.uid, stream.session_id, doc)

    def _close(
        self, stream: Stream, ended_by: str, ended_at_s: float | None = None
    ) -> list[SpeechChange]:
        utterance = stream.utterance
        stream.speech_run_s = 0.0
        stream.utterance = None
        if utterance is None:
            return []  # no start was raised: no end either
        duration = utterance.bytes / 2 / stream.sample_rate
        doc = {
            "uid": stream.uid,
            "session_id": stream.session_id,
            "sample_rate": stream.sample_rate,
            "started_at_s": round(max(0.0, utterance.started_at_s), 3),
            "ended_at_s": round(ended_at_s if ended_at_s is not None else stream.duration_s, 3),
            "speech_s": round(utterance.speech_s, 3),
            "ended_by": ended_by,
            # null when nothing of it could be written (every start raised has its end)
            "utterance": {
                "path": utterance.path,
                "bytes": utterance.bytes,
                "duration_s": round(duration, 6),
            }
            if utterance.bytes and utterance.path
            else None,
        }
        return [SpeechChange(SPEECH_END, stream.uid, stream.session_id, doc)]

    def _append(self, utterance: Utterance, pcm: bytes, rate: int) -> None:
        if not utterance.path:  # no file: only its length is counted
            utterance.bytes += len(pcm)
            return
        if self._undo is not None and utterance.path not in self._undo.files:
            self._undo.files[utterance.path] = utterance.bytes
        try:
            path = inside_data(self.data_dir, data_file(self.data_dir, utterance.path))
            append_wav(Path(path), pcm, rate)
        except (OSError, ValueError) as exc:  # the stream goes on; this utterance has a hole
            log.error("could not write utterance %s: %s", utterance.path, exc)
            return
        utterance.bytes += len(pcm)

    def expire(self, now: float) -> list[SpeechChange]:
        """Drop the streams not heard for `stream_idle` (their open utterance ends)."""
        changes: list[SpeechChange] = []
        for key, stream in list(self._streams.items()):
            if now - stream.heard_at >= self.settings.stream_idle:
                del self._streams[key]
                changes.extend(self._close(stream, "idle"))
        return changes

    def prune_due(self, now: float) -> int:
        """`prune`, at most once an hour (a walk of the utterance folder: not on the rules
        thread, engine.server.receiver runs it on its own)."""
        if now - self._pruned_at < PRUNE_EVERY:
            return 0
        self._pruned_at = now
        return self.prune(now)

    def prune(self, now: float) -> int:
        """Delete utterance WAVs older than `keep_days`; returns how many."""
        if self.settings.keep_days <= 0:
            return 0
        cutoff = now - self.settings.keep_days * 86400
        return prune_older(Path(self.data_dir, UTTERANCES), cutoff, recursive=True)


def _copy(stream: Stream | None) -> Stream | None:
    """A copy of `stream` a feed does not change (its utterance copied too)."""
    if stream is None:
        return None
    utterance = replace(stream.utterance) if stream.utterance is not None else None
    return replace(stream, utterance=utterance)
