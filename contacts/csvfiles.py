"""Reading CSV files people export from spreadsheets, CRMs and other ESPs.

Encodings seen in the wild: UTF-8 (with or without a byte-order mark), UTF-16 (Excel's
"Unicode text"), and Windows-1252 / Latin-1 from older tools. Delimiters: comma,
semicolon (European Excel), tab, pipe. Everything here streams: a file is never read
into memory whole.
"""

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

SNIFF_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
DELIMITERS = ",;\t|"
PREVIEW_ROWS = 5
# Bytes that Windows-1252 leaves undefined: a file holding them is Latin-1.
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")

csv.field_size_limit(1024 * 1024)


class NotCsv(ValueError):
    """The file cannot be read as CSV text; str() says why, for the person who uploaded it."""


@dataclass
class CsvShape:
    encoding: str
    delimiter: str
    has_header: bool
    columns: list[str]
    preview: list[list[str]]


def _looks_like_utf16(head: bytes) -> str | None:
    """UTF-16 without a byte-order mark: ASCII text with every other byte zero."""
    sample = head[:4096]
    if len(sample) < 4:
        return None
    even_zeros = sample[0::2].count(0) / max(1, len(sample[0::2]))
    odd_zeros = sample[1::2].count(0) / max(1, len(sample[1::2]))
    if odd_zeros > 0.3 and even_zeros < 0.05:
        return "utf-16-le"
    if even_zeros > 0.3 and odd_zeros < 0.05:
        return "utf-16-be"
    return None


def detect_encoding(stream: BinaryIO) -> str:
    """The encoding of the whole file (UTF-8 is checked to the end, in chunks)."""
    stream.seek(0)
    head = stream.read(SNIFF_BYTES)
    if not head:
        raise NotCsv("The file is empty.")
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif utf16 := _looks_like_utf16(head):
        encoding = utf16
    elif b"\x00" in head:
        raise NotCsv("This is not a CSV file: it holds binary data (is it a spreadsheet?).")
    else:
        encoding = _utf8_or_windows(stream, head)
    stream.seek(0)
    return encoding


def _utf8_or_windows(stream: BinaryIO, head: bytes) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    chunk, utf8, undefined = head, True, False
    while chunk:
        if utf8:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                utf8 = False
        undefined = undefined or any(byte in chunk for byte in _CP1252_UNDEFINED)
        chunk = stream.read(CHUNK_BYTES)
    if utf8:
        try:
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    return "latin-1" if undefined else "cp1252"


def text_reader(stream: BinaryIO, encoding: str) -> io.TextIOWrapper:
    # newline="" lets the csv module handle line breaks inside quoted cells.
    return io.TextIOWrapper(stream, encoding=encoding, newline="", errors="strict")


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        first_line = sample.splitlines()[0] if sample else ""
        counts = {delimiter: first_line.count(delimiter) for delimiter in DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _is_text(sample: str) -> bool:
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n")
    return controls <= len(sample) // 100


def sniff(stream: BinaryIO) -> CsvShape:
    """Encoding, delimiter, header and the first rows, for the column-mapping screen."""
    encoding = detect_encoding(stream)
    text = text_reader(stream, encoding)
    try:
        sample = text.read(SNIFF_BYTES)
    except UnicodeDecodeError:
        raise NotCsv("The file's text encoding could not be read.") from None
    if not sample.strip():
        raise NotCsv("The file has no rows.")
    if not _is_text(sample):
        raise NotCsv("This is not a CSV file: it holds binary data (is it a spreadsheet?).")
    delimiter = _sniff_delimiter(sample)
    rows = [row for row in _rows_of(sample, delimiter) if any(cell.strip() for cell in row)]
    if not rows:
        raise NotCsv("The file has no rows.")
    has_header = not any("@" in cell for cell in rows[0])
    width = max(len(row) for row in rows[: PREVIEW_ROWS + 1])
    if has_header:
        columns = [cell.strip() or f"Column {n + 1}" for n, cell in enumerate(rows[0])]
        columns += [f"Column {n + 1}" for n in range(len(columns), width)]
        preview = rows[1 : PREVIEW_ROWS + 1]
    else:
        columns = [f"Column {n + 1}" for n in range(width)]
        preview = rows[:PREVIEW_ROWS]
    text.detach()
    stream.seek(0)
    return CsvShape(encoding, delimiter, has_header, columns, preview)


def _rows_of(sample: str, delimiter: str) -> list[list[str]]:
    # The sample may end inside a row: drop what the last line break cut.
    cut = sample.rfind("\n")
    complete = sample[: cut + 1] if cut > 0 else sample
    return list(csv.reader(io.StringIO(complete), delimiter=delimiter))[: PREVIEW_ROWS + 1]


class CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for progress bars)."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.bytes_read = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


def records(stream: BinaryIO, *, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of every record; quoted cells may span lines."""
    reader = csv.reader(text_reader(stream, encoding), delimiter=delimiter)
    next_line = 1
    for row in reader:
        yield next_line, row
        next_line = reader.line_num + 1
