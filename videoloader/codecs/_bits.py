"""Bit-level reading shared by the codec header parsers.

H.264, HEVC, AV1 and VP9 headers are MSB-first bit fields; H.264/HEVC add
Exp-Golomb codes (H.264 9.1) and hide their payload behind emulation
prevention bytes, AV1 adds ``uvlc`` (AV1 4.10.3) and ``leb128`` sizes.
"""

from __future__ import annotations

from .._errors import CorruptVideoError

__all__ = ["BitReader", "read_leb128", "unescape_rbsp"]


def unescape_rbsp(nal: bytes) -> bytes:
    """Drop emulation prevention bytes: ``00 00 03 xx`` -> ``00 00 xx``.

    H.264/HEVC NAL units escape start-code-like byte runs (H.264 7.4.1); the
    raw byte sequence payload must be read without them.
    """
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def read_leb128(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """An AV1 ``leb128()`` value (AV1 4.10.5) at byte ``pos``.

    Returns:
        ``(value, position after it)``.

    Raises:
        CorruptVideoError: the value runs past the buffer or is longer than 8 bytes.
    """
    value = 0
    for i in range(8):
        if pos + i >= len(buf):
            raise CorruptVideoError(f"AV1: leb128 at offset {pos} runs past the end ({len(buf)} bytes)")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise CorruptVideoError(f"AV1: leb128 at offset {pos} is longer than 8 bytes")


class BitReader:
    """MSB-first bit reader with Exp-Golomb (H.264 9.1) and ``uvlc`` (AV1 4.10.3) codes.

    Args:
        data: the bytes to read (already unescaped for H.264/HEVC).
        what: what is being read, for error messages ("H.264 SPS").
    """

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def u(self, n: int) -> int:
        """The next ``n`` bits as an unsigned integer.

        Raises:
            CorruptVideoError: fewer than ``n`` bits are left.
        """
        if self.pos + n > len(self.data) * 8:
            raise CorruptVideoError(
                f"{self.what}: wanted {n} bits at bit {self.pos} of {len(self.data) * 8}; the NAL unit is truncated"
            )
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        """An unsigned Exp-Golomb code, ``ue(v)``.

        Raises:
            CorruptVideoError: truncated, or longer than 32 bits.
        """
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CorruptVideoError(f"{self.what}: Exp-Golomb code longer than 32 bits at bit {self.pos}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """A signed Exp-Golomb code, ``se(v)``."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def at_rbsp_trailing_bits(self) -> bool:
        """True when what is left is ``rbsp_trailing_bits()`` (H.264 7.3.2.11): a
        one bit, then zero bits to the end (trailing zero bytes allowed).

        A walk that reads every field of a parameter set and does not land
        here has misread it: the NAL unit is damaged or not what it claims.
        """
        if self.pos >= len(self.data) * 8 or not self.u(1):
            return False
        return not any(self.data[(self.pos + 7) >> 3 :]) and not (
            self.pos & 7 and self.data[self.pos >> 3] & (0xFF >> (self.pos & 7))
        )

    def uvlc(self) -> int:
        """An AV1 variable-length unsigned code (AV1 4.10.3)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros) if zeros < 32 else (1 << 32) - 1
