"""Audio streams: speech start and end with hysteresis, the utterance's WAV, the bounds
(utterance cap, stream cap, idle streams, old files), and flat memory over an hour."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
import wave
from pathlib import Path

import numpy as np

from engine.config import AudioSettings
from engine.runtime.audio_streams import SPEECH_END, SPEECH_START, AudioStreams, SpeechChange
from engine.runtime.payloads import decode_audio
from tests.conftest import fixture_path

SPEECH = fixture_path("audio-speech-16k.pcm").read_bytes()
SILENCE = fixture_path("audio-silence-16k.pcm").read_bytes()
SECOND = 32000  # bytes of one second at 16 kHz


def seconds(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + SECOND] for i in range(0, len(pcm) - SECOND + 1, SECOND)]


def feed_all(
    streams: AudioStreams,
    chunks: list[bytes],
    uid: str = "u1",
    session: str = "",
    rate: int = 16000,
) -> list[SpeechChange]:
    changes: list[SpeechChange] = []
    for chunk in chunks:
        event = decode_audio(chunk, uid, rate)
        event.session_id = session
        changes.extend(streams.feed(event, time.time()))
    return changes


def test_speech_between_silences_starts_and_ends_once(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(), str(tmp_path))
    chunks = seconds(SILENCE) + seconds(SPEECH) + seconds(SILENCE) + seconds(SILENCE)
    changes = feed_all(streams, chunks)
    assert [c.trigger for c in changes] == [SPEECH_START, SPEECH_END]
    start, end = (c.doc for c in changes)
    assert 2.4 <= start["started_at_s"] <= 2.6  # 2 s of silence, then 0.5 s in the sample
    assert end["ended_by"] == "silence"
    assert 5.6 <= end["ended_at_s"] <= 6.0
    assert 2.5 <= end["speech_s"] <= 3.3
    path = tmp_path / end["utterance"]["path"]
    assert path.is_relative_to(tmp_path / "audio" / "utterances" / "u1")
    # the audio from its first frame to the frame where the silence ended it
    first = round(start["started_at_s"] * 16000)
    last = round((end["ended_at_s"] + 1.5) * 16000)
    with wave.open(str(path), "rb") as wav:
        assert wav.getnframes() == end["utterance"]["bytes"] // 2
        assert abs(wav.getnframes() - (last - first)) <= 16000 * 0.03 * 2  # a frame each end
        data = wav.readframes(wav.getnframes())
    at = b"".join(chunks).find(data)  # the stream's own audio, from where the speech began
    assert abs(at // 2 - first) <= 16  # started_at_s is rounded to 1 ms


def test_a_chunk_with_many_utterances_writes_each_its_own_part(tmp_path: Path) -> None:
    """60 bursts of speech in one chunk: 60 utterances, together no more than the chunk
    (each used to be written the whole chunk: 329.6 MiB for a 5.5 MiB chunk)."""
    unit = SPEECH[16000:48000] + bytes(2 * SECOND)  # 1 s of speech, 2 s of silence
    chunk = unit * 60
    streams = AudioStreams(AudioSettings(), str(tmp_path))
    changes = streams.feed(decode_audio(chunk, "u1", 16000), time.time())
    ends = [c.doc for c in changes if c.trigger == SPEECH_END]
    assert len(ends) == 60
    written = sum(p.stat().st_size for p in (tmp_path / "audio").rglob("*.wav"))
    assert written <= len(chunk) + 60 * 44
    for doc in ends:
        data = (tmp_path / doc["utterance"]["path"]).read_bytes()[44:]
        assert 0 < len(data) < len(unit) and data in chunk


def test_speech_beginning_at_a_chunk_end_is_kept_from_its_start(tmp_path: Path) -> None:
    """Speech that begins in the last 0.3 s of a chunk is confirmed in the next: the
    utterance started with that next chunk, its first syllables missing."""
    audio = bytes(2 * int(16000 * 1.8)) + SPEECH[16000:] + bytes(3 * SECOND)
    streams = AudioStreams(AudioSettings(), str(tmp_path))
    changes = feed_all(streams, seconds(audio))
    start, end = (c.doc for c in changes)
    assert 1.75 <= start["started_at_s"] < 2.0  # in the first chunk's last 0.3 s
    data = (tmp_path / end["utterance"]["path"]).read_bytes()[44:]
    at = audio.find(data)
    assert abs(at // 2 - round(start["started_at_s"] * 16000)) <= 16
    assert len(streams) == 1 and next(iter(streams)).tail == b""  # nothing kept after


def test_a_feed_is_undone_only_while_it_is_the_last_of_its_stream(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(), str(tmp_path))
    feed_all(streams, [SILENCE[:SECOND], seconds(SPEECH)[1]])
    first = streams.last_undo
    feed_all(streams, [seconds(SPEECH)[2]])
    second = streams.last_undo
    assert first is not None and second is not None
    assert not streams.undo(first)  # fed since: left alone
    (stream,) = streams
    path = tmp_path / stream.utterance.path if stream.utterance else None
    assert path is not None and path.stat().st_size == 44 + 2 * SECOND - 7680
    assert streams.undo(second)  # the last one: the stream and its file as before it
    (stream,) = streams
    assert stream.duration_s == 2.0 and path.stat().st_size == 44 + SECOND - 7680


def test_short_gaps_do_not_end_speech_and_a_lone_click_does_not_start_it(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(speech_end=1.5), str(tmp_path))
    speech = seconds(SPEECH)
    # a one-second gap inside speech is shorter than speech_end: one utterance
    changes = feed_all(streams, [speech[1], SILENCE[:SECOND], speech[2]] + seconds(SILENCE))
    assert [c.trigger for c in changes] == [SPEECH_START, SPEECH_END]
    click = SILENCE[: SECOND // 2] + SPEECH[40000:43200] + SILENCE[: SECOND // 2 - 3200]
    assert feed_all(streams, [click, SILENCE[:SECOND]], uid="u2") == []  # 0.1 s < 0.3 s


def test_the_chunk_gets_the_stream_time_and_whether_it_is_speech(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(), str(tmp_path))
    docs = []
    for chunk in seconds(SILENCE) + seconds(SPEECH) + seconds(SILENCE):
        event = decode_audio(chunk, "u1", 16000)
        streams.feed(event, time.time())
        docs.append(event.doc)
    assert [d["session_duration_s"] for d in docs] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert [d["speaking"] for d in docs] == [False, False, True, True, True, True, True, True]


def test_a_long_utterance_is_cut_at_max_utterance(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(max_utterance=2.0), str(tmp_path))
    speech = seconds(SPEECH)[1:3]  # two seconds of unbroken speech
    changes = feed_all(streams, speech * 3 + seconds(SILENCE))
    ends = [c.doc for c in changes if c.trigger == SPEECH_END]
    # the third ends at its cap too: the first silent chunk would take it past 2 s
    assert [e["ended_by"] for e in ends] == ["max_duration"] * 3
    assert all(e["utterance"]["duration_s"] <= 2.0 for e in ends)
    assert [c.trigger for c in changes].count(SPEECH_START) == 3


def test_streams_are_capped_and_idle_ones_end_their_speech(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(max_streams=2, stream_idle=60), str(tmp_path))
    speech = seconds(SPEECH)[1]
    feed_all(streams, [speech], uid="a")
    feed_all(streams, [speech], uid="b")
    evicted = feed_all(streams, [SILENCE[:SECOND]], uid="c")  # "a" was heard least recently
    assert [(c.trigger, c.uid, c.doc["ended_by"]) for c in evicted] == [
        (SPEECH_END, "a", "evicted")
    ]
    assert len(streams) == 2
    ended = streams.expire(time.time() + 61)
    assert [(c.uid, c.doc["ended_by"]) for c in ended] == [("b", "idle")]
    assert len(streams) == 0


def test_one_uid_cycling_session_ids_evicts_only_its_own_streams(tmp_path: Path) -> None:
    """256 made-up session ids from one uid used to push every other user's stream out
    (their open utterance ended: evicted)."""
    settings = AudioSettings(max_streams=256, max_streams_per_uid=4)
    streams = AudioStreams(settings, str(tmp_path))
    assert feed_all(streams, [seconds(SPEECH)[1]], uid="victim", session="real")
    evicted = []
    for n in range(256):
        evicted += feed_all(streams, [bytes(320)], uid="attacker", session=f"s{n}")
    assert [c for c in evicted if c.uid == "victim"] == []
    assert len(streams) == 1 + 4
    ends = feed_all(streams, seconds(SILENCE), uid="victim", session="real")
    assert [c.doc["ended_by"] for c in ends] == ["silence"]


def test_sessions_are_separate_streams(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(), str(tmp_path))
    feed_all(streams, seconds(SPEECH)[1:2], session="s1")
    changes = feed_all(streams, seconds(SILENCE), session="s2")
    assert changes == [] and len(streams) == 2


def test_long_or_unicode_ids_still_name_a_writable_utterance(tmp_path: Path) -> None:
    """64 four-byte letters passed isalnum() and the 64-character cut: a 256-byte name the
    file system refused; the start was raised, the end never."""
    letters = "\U0001d400" * 64
    for uid, session in ((letters, "s"), ("u1", letters), ("u1", "s" * 300)):
        streams = AudioStreams(AudioSettings(), str(tmp_path))
        changes = feed_all(streams, [SILENCE, SPEECH, SILENCE + SILENCE], uid, session)
        assert [c.trigger for c in changes] == [SPEECH_START, SPEECH_END]
        path = Path(changes[-1].doc["utterance"]["path"])
        assert all(part.isascii() and len(part) <= 120 for part in path.parts)
        assert (tmp_path / path).stat().st_size > 44


def test_an_end_is_raised_for_every_start_even_when_nothing_was_written(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "audio"
    blocker.write_text("a file where the utterances folder would be")
    streams = AudioStreams(AudioSettings(), str(tmp_path))
    changes = feed_all(streams, [SILENCE, SPEECH, SILENCE + SILENCE])
    assert [c.trigger for c in changes] == [SPEECH_START, SPEECH_END]
    assert changes[-1].doc["utterance"] is None


def test_without_write_files_utterances_are_followed_but_not_kept(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(max_utterance=2), str(tmp_path))
    streams.write_files = False
    changes = feed_all(streams, [SILENCE, *seconds(SPEECH)[1:4], SILENCE + SILENCE])
    ends = [c.doc for c in changes if c.trigger == SPEECH_END]
    assert ends[0]["ended_by"] == "max_duration"  # still cut at max_utterance
    assert all(doc["utterance"] is None for doc in ends)
    assert not (tmp_path / "audio").exists()


def test_old_utterance_files_are_deleted(tmp_path: Path) -> None:
    streams = AudioStreams(AudioSettings(keep_days=1), str(tmp_path))
    changes = feed_all(streams, seconds(SPEECH) + seconds(SILENCE))
    old = tmp_path / changes[-1].doc["utterance"]["path"]
    new = old.with_name("recent.wav")
    new.write_bytes(old.read_bytes())
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    assert streams.prune(time.time()) == 1
    assert not old.exists() and new.exists()


def test_an_hour_at_8khz_in_one_second_chunks_keeps_memory_flat(tmp_path: Path) -> None:
    """3600 chunks through decoding and the stream (speech now and then, as in a
    conversation): what is held after the first ten minutes does not grow."""
    rate = 8000
    pcm8 = np.frombuffer(SPEECH, dtype="<i2")[::2].tobytes()  # every other sample: 8 kHz
    talk = [pcm8[i : i + 2 * rate] for i in range(0, 4 * 2 * rate, 2 * rate)]
    assert min(decode_audio(chunk, "u", rate).doc["speech_ratio"] for chunk in talk) > 0.5
    quiet = SILENCE[: 2 * rate]
    streams = AudioStreams(AudioSettings(max_utterance=30), str(tmp_path))
    pattern = talk + [quiet] * 6  # 4 s of speech, 6 s of silence: an utterance every 10 s
    # what the code under test holds (other threads of the test run may allocate too)
    ours = [
        tracemalloc.Filter(True, pattern)
        for pattern in ("*/engine/runtime/*", "*/engine/wav.py", "*/numpy/*", __file__)
    ]
    tracemalloc.start()
    try:
        held = []
        for second in range(3600):
            body = bytes(bytearray(pattern[second % len(pattern)]))  # new, as each post's
            event = decode_audio(body, "u", rate, None)
            streams.feed(event, time.time())
            del event, body
            if second in (600, 3599):
                gc.collect()
                snapshot = tracemalloc.take_snapshot().filter_traces(ours)
                held.append(sum(stat.size for stat in snapshot.statistics("filename")))
    finally:
        tracemalloc.stop()
    assert held[1] - held[0] < 64 * 1024, held  # nothing accumulates per chunk
    assert held[1] < 1024 * 1024, held  # a few numbers per stream, not the hour's audio
    utterances = list((tmp_path / "audio" / "utterances" / "u").glob("*.wav"))
    assert len(utterances) == 360  # each utterance on disk, none in memory
