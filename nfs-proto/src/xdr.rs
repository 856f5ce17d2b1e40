//! XDR (RFC 4506) primitives: a bounded reader over a received buffer and a writer.
//!
//! Every variable-length item is read with an explicit maximum, checked *before* anything is
//! allocated or sliced. Opaque data is returned as a [`Bytes`] slice of the received buffer, so a
//! WRITE payload is never copied. Padding must be zero on decode and is written as zero.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a decode failed. Any of these makes the call GARBAGE_ARGS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XdrError {
    /// The buffer ended before the item did.
    Truncated,
    /// A length field exceeds the limit for that item.
    TooLong { len: u32, max: u32 },
    /// Padding bytes after an opaque item were not zero.
    NonZeroPadding,
    /// A discriminant that the protocol does not define.
    BadDiscriminant(u32),
    /// Bytes left over after the last item.
    TrailingBytes(usize),
}

impl std::fmt::Display for XdrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XdrError::Truncated => write!(f, "truncated XDR item"),
            XdrError::TooLong { len, max } => write!(f, "XDR length {len} exceeds limit {max}"),
            XdrError::NonZeroPadding => write!(f, "non-zero XDR padding"),
            XdrError::BadDiscriminant(d) => write!(f, "undefined XDR discriminant {d}"),
            XdrError::TrailingBytes(n) => write!(f, "{n} trailing bytes after XDR message"),
        }
    }
}

impl std::error::Error for XdrError {}

pub type Result<T> = std::result::Result<T, XdrError>;

/// Types that decode themselves from XDR.
pub trait Decode: Sized {
    fn decode(r: &mut Reader) -> Result<Self>;
}

/// Types that encode themselves as XDR.
pub trait Encode {
    fn encode(&self, w: &mut Writer);
}

/// Bytes of padding after an opaque item of `len` bytes.
pub const fn pad_len(len: usize) -> usize {
    (4 - (len & 3)) & 3
}

/// Encoded size of an opaque<> of `len` bytes: length word, data, padding.
pub const fn opaque_size(len: usize) -> usize {
    4 + len + pad_len(len)
}

/// A cursor over a received buffer.
#[derive(Clone, Debug)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes not yet consumed, as a slice of the original buffer.
    pub fn rest(&self) -> Bytes {
        self.buf.slice(self.pos..)
    }

    /// Consumed position, in bytes from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<Bytes> {
        if self.remaining() < n {
            return Err(XdrError::Truncated);
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.remaining() < N {
            return Err(XdrError::Truncated);
        }
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            d => Err(XdrError::BadDiscriminant(d)),
        }
    }

    fn skip_padding(&mut self, len: usize) -> Result<()> {
        let pad = pad_len(len);
        let p = self.take(pad)?;
        if p.iter().any(|&b| b != 0) {
            return Err(XdrError::NonZeroPadding);
        }
        Ok(())
    }

    /// Fixed-length opaque[N].
    pub fn opaque_fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let a = self.take_array::<N>()?;
        self.skip_padding(N)?;
        Ok(a)
    }

    /// Variable-length opaque<max>, returned as a slice of the received buffer (no copy).
    pub fn opaque(&mut self, max: u32) -> Result<Bytes> {
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        let b = self.take(len as usize)?;
        self.skip_padding(len as usize)?;
        Ok(b)
    }

    /// The length of an array<max>, checked against the limit and against the bytes left
    /// (each element takes at least `element_size_min` bytes), so a caller can allocate it.
    pub fn array_len(&mut self, max: u32, element_size_min: usize) -> Result<usize> {
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        if (len as usize).saturating_mul(element_size_min) > self.remaining() {
            return Err(XdrError::Truncated);
        }
        Ok(len as usize)
    }

    /// An optional item (`*T` in XDR).
    pub fn optional<T>(&mut self, f: impl FnOnce(&mut Reader) -> Result<T>) -> Result<Option<T>> {
        if self.bool()? {
            Ok(Some(f(self)?))
        } else {
            Ok(None)
        }
    }
}

/// An XDR encoder over a growable buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: BytesMut,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: BytesMut::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Bytes {
        self.buf.freeze()
    }

    pub fn into_inner(self) -> BytesMut {
        self.buf
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.put_u32(v as u32);
    }

    pub fn padding(&mut self, len: usize) {
        self.buf.put_bytes(0, pad_len(len));
    }

    pub fn opaque_fixed(&mut self, data: &[u8]) {
        self.buf.put_slice(data);
        self.padding(data.len());
    }

    /// opaque<>: length, data, zero padding. The caller guarantees `data.len()` fits the
    /// protocol's limit for the item.
    pub fn opaque(&mut self, data: &[u8]) {
        self.buf.put_u32(data.len() as u32);
        self.opaque_fixed(data);
    }

    pub fn optional<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Writer, &T)) {
        match v {
            Some(v) => {
                self.bool(true);
                f(self, v);
            }
            None => self.bool(false),
        }
    }

    /// Overwrites a u32 written earlier at `offset` (used for lengths known only at the end).
    pub fn patch_u32(&mut self, offset: usize, v: u32) {
        self.buf[offset..offset + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Drops everything written after the first `len` bytes (to take back an item that turned
    /// out not to fit a reply budget).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
}

// Primitive items, so that structs of them can derive their codecs field by field.

impl Decode for u32 {
    fn decode(r: &mut Reader) -> Result<Self> {
        r.u32()
    }
}

impl Encode for u32 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self);
    }
}

impl Decode for u64 {
    fn decode(r: &mut Reader) -> Result<Self> {
        r.u64()
    }
}

impl Encode for u64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self);
    }
}

impl Decode for i64 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(r.u64()? as i64)
    }
}

impl Encode for i64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self as u64);
    }
}

impl Decode for bool {
    fn decode(r: &mut Reader) -> Result<Self> {
        r.bool()
    }
}

impl Encode for bool {
    fn encode(&self, w: &mut Writer) {
        w.bool(*self);
    }
}

/// Fixed-length opaque[N].
impl<const N: usize> Decode for [u8; N] {
    fn decode(r: &mut Reader) -> Result<Self> {
        r.opaque_fixed::<N>()
    }
}

impl<const N: usize> Encode for [u8; N] {
    fn encode(&self, w: &mut Writer) {
        w.opaque_fixed(self);
    }
}

/// `*T` in XDR, which has the same encoding as an array `T<1>`.
impl<T: Decode> Decode for Option<T> {
    fn decode(r: &mut Reader) -> Result<Self> {
        r.optional(T::decode)
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, w: &mut Writer) {
        w.optional(self.as_ref(), |w, v| v.encode(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trips_with_zero_padding() {
        let mut w = Writer::new();
        w.opaque(b"abcde");
        w.u64(7);
        let b = w.into_bytes();
        assert_eq!(b.len(), 4 + 8 + 8);
        let mut r = Reader::new(b);
        assert_eq!(&r.opaque(16).unwrap()[..], b"abcde");
        assert_eq!(r.u64().unwrap(), 7);
        r.finish().unwrap();
    }

    #[test]
    fn opaque_longer_than_its_limit_is_rejected_before_reading_it() {
        let mut w = Writer::new();
        w.u32(u32::MAX);
        let mut r = Reader::new(w.into_bytes());
        assert_eq!(
            r.opaque(64),
            Err(XdrError::TooLong {
                len: u32::MAX,
                max: 64
            })
        );
    }

    #[test]
    fn non_zero_padding_is_rejected() {
        let b = Bytes::from_static(&[0, 0, 0, 1, b'x', 1, 0, 0]);
        assert_eq!(Reader::new(b).opaque(8), Err(XdrError::NonZeroPadding));
    }

    #[test]
    fn array_length_beyond_remaining_bytes_is_rejected() {
        let b = Bytes::from_static(&[0, 0, 0, 10, 0, 0, 0, 1]);
        assert_eq!(Reader::new(b).array_len(16, 4), Err(XdrError::Truncated));
    }

    #[test]
    fn bool_other_than_zero_or_one_is_rejected() {
        let b = Bytes::from_static(&[0, 0, 0, 2]);
        assert_eq!(Reader::new(b).bool(), Err(XdrError::BadDiscriminant(2)));
    }

    #[test]
    fn opaque_is_a_slice_of_the_received_buffer() {
        let mut w = Writer::new();
        w.opaque(&[9u8; 100]);
        let b = w.into_bytes();
        let base = b.as_ptr() as usize;
        let got = Reader::new(b).opaque(1000).unwrap();
        assert_eq!(got.as_ptr() as usize, base + 4);
    }
}
