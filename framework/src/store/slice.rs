//! Slices: a projection's streams split into a fixed number of parts, each with its own
//! checkpoint, lease and fence, so that several tasks and instances share the work.
//! See [`Slice`] for which slice a stream belongs to.

use std::fmt;

use md5::{Digest, Md5};

use super::error::InvalidInput;
use super::StreamId;

/// The most slices a projection may have.
pub const MAX_SLICES: u16 = 1024;

/// The hash that places a stream in a slice (see [`Slice`]).
pub fn stream_hash(aggregate_type: &str, aggregate_id: &str) -> u32 {
    let mut md5 = Md5::new();
    md5.update(aggregate_type.as_bytes());
    md5.update(b"/");
    md5.update(aggregate_id.as_bytes());
    let digest = md5.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Checks a slice count: from 1 to [`MAX_SLICES`].
pub fn slice_count(count: u16) -> Result<u16, InvalidInput> {
    if count == 0 || count > MAX_SLICES {
        return Err(InvalidInput::OutOfRange {
            field: "slices",
            reason: "a projection has from 1 to factum::store::MAX_SLICES (1024) slices",
        });
    }
    Ok(count)
}

/// One slice of a projection's streams: slice `index` of `count`.
///
/// # Which slice a stream belongs to
///
/// A stream belongs to slice `h mod N` of a projection of `N` slices, where `h` is the
/// first four bytes, read as a big-endian unsigned integer, of the MD5 digest of the
/// stream's UTF-8 name `aggregate_type/aggregate_id`. The hash is the same in every
/// process, every version of factum and every backend. PostgreSQL computes it in SQL (on
/// a database in UTF-8, which `md5()` then hashes byte for byte as Rust does), so a
/// slice's reader selects its events on the server:
///
/// ```sql
/// ('x' || substr(md5(aggregate_type || '/' || aggregate_id), 1, 8))::bit(32)::bigint % N
/// ```
///
/// ```
/// use factum::store::{stream_hash, Slice};
/// use factum::StreamId;
///
/// // md5("Order/o-1") = d6e72fac…: 0xd6e72fac = 3605475244.
/// assert_eq!(stream_hash("Order", "o-1"), 3_605_475_244);
/// let stream = StreamId::new("Order", "o-1")?;
/// assert_eq!(Slice::of(&stream, 12)?.index(), (3_605_475_244u32 % 12) as u16);
/// # Ok::<(), factum::store::InvalidInput>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slice {
    index: u16,
    count: u16,
}

impl Slice {
    /// Slice `index` (from 0) of `count`.
    pub fn new(index: u16, count: u16) -> Result<Self, InvalidInput> {
        slice_count(count)?;
        if index >= count {
            return Err(InvalidInput::OutOfRange {
                field: "slice",
                reason: "the index must be below the count",
            });
        }
        Ok(Slice { index, count })
    }

    /// Every slice of a projection of `count` slices.
    pub fn all(count: u16) -> Result<impl Iterator<Item = Slice>, InvalidInput> {
        slice_count(count)?;
        Ok((0..count).map(move |index| Slice { index, count }))
    }

    /// The slice `stream` belongs to among `count`.
    pub fn of(stream: &StreamId, count: u16) -> Result<Self, InvalidInput> {
        slice_count(count)?;
        let h = stream_hash(stream.aggregate_type(), stream.aggregate_id());
        Ok(Slice { index: (h % u32::from(count)) as u16, count })
    }

    /// The slice's index, from 0.
    pub fn index(self) -> u16 {
        self.index
    }

    /// How many slices there are.
    pub fn count(self) -> u16 {
        self.count
    }

    /// Whether `stream` belongs to this slice.
    pub fn contains(self, stream: &StreamId) -> bool {
        stream_hash(stream.aggregate_type(), stream.aggregate_id()) % u32::from(self.count)
            == u32::from(self.index)
    }

    /// The consumer name the slice's checkpoint, lease and fence hang on, given its build's
    /// ([`BuildId::consumer`](crate::store::BuildId::consumer)): the build's own name for a
    /// projection of one slice, else `name#index/count`.
    ///
    /// ```
    /// use factum::store::Slice;
    ///
    /// assert_eq!(Slice::new(0, 1)?.consumer("order_summary"), "order_summary");
    /// assert_eq!(Slice::new(3, 12)?.consumer("order_summary@v2"), "order_summary@v2#3/12");
    /// # Ok::<(), factum::store::InvalidInput>(())
    /// ```
    pub fn consumer(self, build: &str) -> String {
        if self.count == 1 {
            build.to_owned()
        } else {
            format!("{build}#{}/{}", self.index, self.count)
        }
    }
}

/// The build's consumer name in a slice's ([`Slice::consumer`]): the name without its
/// `#index/count` suffix; the name itself when it has none.
///
/// ```
/// use factum::store::slice_build;
///
/// assert_eq!(slice_build("order_summary@v2#3/12"), "order_summary@v2");
/// assert_eq!(slice_build("order_summary"), "order_summary");
/// ```
pub fn slice_build(consumer: &str) -> &str {
    let Some((build, suffix)) = consumer.rsplit_once('#') else { return consumer };
    let slice = suffix.split_once('/').filter(|(i, n)| {
        !i.is_empty() && !n.is_empty() && i.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit())
    });
    if slice.is_some() {
        build
    } else {
        consumer
    }
}

impl fmt::Display for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_is_in_exactly_one_slice() {
        for i in 0..200 {
            let stream = StreamId::new("Order", format!("o-{i}")).unwrap();
            let holders: Vec<Slice> = Slice::all(7).unwrap().filter(|s| s.contains(&stream)).collect();
            assert_eq!(holders, vec![Slice::of(&stream, 7).unwrap()]);
        }
    }

    #[test]
    fn bad_counts_and_indexes_are_refused() {
        assert!(Slice::new(0, 0).is_err());
        assert!(Slice::new(0, MAX_SLICES + 1).is_err());
        assert!(Slice::new(5, 5).is_err());
        assert!(Slice::new(MAX_SLICES - 1, MAX_SLICES).is_ok());
    }

    #[test]
    fn streams_spread_over_the_slices() {
        let mut counts = [0u32; 12];
        for i in 0..12_000 {
            counts[usize::from(
                Slice::of(&StreamId::new("Acc", format!("a-{i}")).unwrap(), 12).unwrap().index(),
            )] += 1;
        }
        assert!(counts.iter().all(|&n| (800..1200).contains(&n)), "{counts:?}");
    }
}
