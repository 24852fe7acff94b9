"""Inflating a CRM's compressed answer in small steps, so that no gzip bomb makes a large buffer."""

from collections.abc import Iterator

STEP = 16384


def inflated(inflate, data: bytes, step: int = STEP) -> Iterator[bytes]:
    """``data`` fed to ``inflate`` (a zlib decompressobj), its output ``step`` bytes at most at a time.

    Asked for up to the cap at once, zlib built a 1 MiB buffer per call, and a worker's threads
    each kept several MB of them in their malloc arenas (bench/hostile.py). Output cut at ``step``
    may leave more pending in zlib even once all the input is taken: asked for until it runs dry.
    """
    while True:
        part = inflate.decompress(data, step)
        if part:
            yield part
        data = inflate.unconsumed_tail
        if inflate.eof or (not data and len(part) < step):
            return
