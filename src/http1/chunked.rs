//! The chunked transfer coding (RFC 9112 section 7.1), both ways: the one writer of chunk
//! framing (for answers to callers and request bodies to upstreams) and the one decoder
//! (for upstream answers), strict about what it reads: CRLF line ends only, hexadecimal sizes
//! without sign or prefix, bounded size lines and trailers (read, then dropped).

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line, extensions included.
pub const MAX_SIZE_LINE: usize = 4 * 1024;

/// Most bytes of trailer fields read (and dropped) after a chunked body.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// What the decoder asks to read when it needs more: at least this, at most [`MORE_MAX`].
const MORE: usize = 8 * 1024;
const MORE_MAX: usize = 64 * 1024;

/// The chunk-size line for `len` bytes of data (`{len:x}\r\n`), written without formatting.
pub fn size_line(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// What ends each chunk's data.
pub const DATA_END: &[u8] = b"\r\n";

/// The last chunk, with no trailers: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Up to `left` bytes from the front of the buffer.
pub fn take(read: &mut BytesMut, left: &mut u64) -> Bytes {
    let n = usize::try_from(*left).map_or(read.len(), |l| l.min(read.len()));
    *left -= n as u64;
    read.split_to(n).freeze()
}

/// What one step of the chunked decoder found.
pub enum Step {
    Data(Bytes),
    /// The state moved on; step again.
    Again,
    /// The last chunk and the trailers have been read.
    End,
    /// More bytes are needed, about this many.
    More(usize),
}

/// The chunked decoder's place in a body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decoder(Chunk);

#[derive(Debug, Clone, Copy, Default)]
enum Chunk {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

impl Decoder {
    /// One step over what has been read (RFC 9112 section 7.1). Lines must end in CRLF;
    /// sizes are hexadecimal without sign or prefix; trailers are dropped. `Err` says what
    /// is malformed.
    pub fn step(&mut self, read: &mut BytesMut) -> Result<Step, &'static str> {
        step(&mut self.0, read)
    }
}

fn step(chunk: &mut Chunk, read: &mut BytesMut) -> Result<Step, &'static str> {
    match *chunk {
        Chunk::Size => {
            let Some(end) = memchr::memchr(b'\n', read) else {
                return match read.len() > MAX_SIZE_LINE {
                    true => Err("chunk-size line too long"),
                    false => Ok(Step::More(MORE)),
                };
            };
            let line = read.split_to(end + 1);
            let size = chunk_size(&line)?;
            *chunk = if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) };
            Ok(Step::Again)
        }
        Chunk::Data(mut left) => {
            if read.is_empty() {
                return Ok(Step::More(usize::try_from(left.saturating_add(2)).unwrap_or(MORE_MAX)));
            }
            let data = take(read, &mut left);
            *chunk = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
            Ok(Step::Data(data))
        }
        Chunk::DataEnd => {
            if read.len() < 2 {
                return Ok(Step::More(MORE));
            }
            if &read[..2] != b"\r\n" {
                return Err("chunk data not followed by CRLF");
            }
            read.advance(2);
            *chunk = Chunk::Size;
            Ok(Step::Again)
        }
        Chunk::Trailers(seen) => {
            let Some(end) = memchr::memchr(b'\n', read) else {
                return match seen + read.len() > MAX_TRAILERS {
                    true => Err("trailers too long"),
                    false => Ok(Step::More(MORE)),
                };
            };
            let line = read.split_to(end + 1);
            if !line.ends_with(b"\r\n") || line[..line.len() - 2].contains(&b'\r') {
                return Err("trailer line not ended by CRLF");
            }
            if line.len() == 2 {
                return Ok(Step::End);
            }
            if seen + line.len() > MAX_TRAILERS {
                return Err("trailers too long");
            }
            *chunk = Chunk::Trailers(seen + line.len());
            Ok(Step::Again)
        }
    }
}

/// The size on a chunk-size line (with its CRLF): hex digits, then nothing or extensions.
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let Some(text) = line.strip_suffix(b"\r\n") else {
        return Err("chunk-size line not ended by CRLF");
    };
    let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err("bad chunk size");
    }
    let rest = &text[digits..];
    let extensions_ok = match rest.first() {
        None => true,
        Some(b';' | b' ' | b'\t') => {
            let after = rest.trim_ascii_start();
            !rest.contains(&b'\r') && (after.is_empty() || after.starts_with(b";"))
        }
        Some(_) => false,
    };
    if !extensions_ok {
        return Err("bad chunk size");
    }
    let size = text[..digits].iter().fold(0u64, |n, &d| (n << 4) | u64::from(hex_value(d)));
    Ok(size)
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.wrapping_sub(b'A').wrapping_add(10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUT: &str = "the body was cut short";

    /// Decodes `wire` fed in pieces of `piece` bytes; the data, or the first error.
    fn decode(wire: &[u8], piece: usize) -> Result<(Vec<u8>, usize), &'static str> {
        let mut chunk = Chunk::Size;
        let mut read = BytesMut::new();
        let mut fed = 0;
        let mut out = Vec::new();
        loop {
            match step(&mut chunk, &mut read)? {
                Step::Data(data) => out.extend_from_slice(&data),
                Step::Again => {}
                // What follows the body: read already, or not yet fed.
                Step::End => return Ok((out, read.len() + wire.len() - fed)),
                Step::More(_) => {
                    if fed == wire.len() {
                        return Err(CUT);
                    }
                    let next = (fed + piece).min(wire.len());
                    read.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn size_lines() {
        for len in [0usize, 1, 9, 10, 15, 16, 255, 4096, 65535, usize::MAX] {
            let mut out = Vec::new();
            size_line(len, &mut out);
            assert_eq!(out, format!("{len:x}\r\n").into_bytes());
        }
    }

    #[test]
    fn chunked_bodies() {
        let wire = b"5\r\nhello\r\n1;ext=\"a b\"\r\n \r\nA \r\n0123456789\r\n0\r\nx-sum: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, wire.len()] {
            let decoded = decode(wire, piece).ok();
            assert_eq!(decoded, Some((b"hello 0123456789".to_vec(), 4)), "piece {piece}");
        }
        assert_eq!(decode(b"0\r\n\r\n", 1).ok(), Some((Vec::new(), 0)));
        assert_eq!(decode(b"ffffffffffffffff\r\nab", 100).err(), Some(CUT));
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"10000000000000000\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"0\r\nx: 1\n\r\n",
        ] {
            assert!(matches!(decode(bad, 3), Err(e) if e != CUT), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut long = b"5;".to_vec();
        long.resize(MAX_SIZE_LINE + 10, b'x');
        assert!(matches!(decode(&long, 1000), Err(e) if e != CUT));
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 100 {
            trailers.extend_from_slice(b"x-t: 0123456789\r\n");
        }
        assert!(matches!(decode(&trailers, 500), Err(e) if e != CUT));
        assert_eq!(chunk_size(b"fF\r\n").ok(), Some(255));
        assert_eq!(chunk_size(b"ffffffffffffffff\r\n").ok(), Some(u64::MAX));
    }
}
