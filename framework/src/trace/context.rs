//! The W3C trace context's two headers, parsed: a value of these types is always valid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a `traceparent` or `tracestate` text is not valid W3C trace context.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {header}: {reason}")]
pub struct InvalidTraceContext {
    /// `traceparent` or `tracestate`.
    pub header: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

fn invalid<T>(header: &'static str, reason: &'static str) -> Result<T, InvalidTraceContext> {
    Err(InvalidTraceContext { header, reason })
}

/// A W3C `traceparent`: the trace, the span that is the parent, and the trace flags.
///
/// Parsed from its text form (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`),
/// lower-case hex, with neither id all zeros; a later version's extra fields are
/// ignored, as the recommendation asks. Written back in version `00`.
///
/// ```
/// use factum::trace::TraceParent;
///
/// let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
/// assert!(parent.sampled());
/// assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse::<TraceParent>().is_err());
/// # Ok::<(), factum::trace::InvalidTraceContext>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A context from its parts; `None` when either id is all zeros.
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceParent { trace_id, parent_id, flags })
    }

    /// The trace's id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the span this context comes from (the parent of a span continuing it).
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled the trace (the flags' lowest bit).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lower-case hex digits, as trace back ends show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

const HEADER: &str = "traceparent";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], InvalidTraceContext> {
    let b = text.as_bytes();
    if b.len() != 2 * N {
        return invalid(HEADER, what);
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => invalid(HEADER, what),
    };
    let mut out = [0; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Ok(out)
}

impl FromStr for TraceParent {
    type Err = InvalidTraceContext;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const LEN: usize = 55;
        let version = s.get(..2).ok_or(InvalidTraceContext { header: HEADER, reason: "too short" })?;
        let [version] = unhex::<1>(version, "the version is not two lower-case hex digits")?;
        if version == 0xff {
            return invalid(HEADER, "version ff is invalid");
        }
        if s.len() < LEN || (version == 0 && s.len() != LEN) {
            return invalid(HEADER, "not 55 characters long");
        }
        if s.len() > LEN && s.as_bytes()[LEN] != b'-' {
            return invalid(HEADER, "a later version's extra fields must follow a dash");
        }
        let b = s.as_bytes();
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return invalid(HEADER, "fields are not separated by dashes");
        }
        let trace_id = unhex::<16>(&s[3..35], "the trace id is not 32 lower-case hex digits")?;
        let parent_id = unhex::<8>(&s[36..52], "the parent id is not 16 lower-case hex digits")?;
        let [flags] = unhex::<1>(&s[53..55], "the flags are not two lower-case hex digits")?;
        if trace_id == [0; 16] {
            return invalid(HEADER, "the trace id is all zeros");
        }
        if parent_id == [0; 8] {
            return invalid(HEADER, "the parent id is all zeros");
        }
        Ok(TraceParent { trace_id, parent_id, flags })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.parent_id), self.flags)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// A W3C `tracestate`: vendors' `key=value` entries, comma-separated, passed on as they
/// came. Checked for its shape only: at most 512 characters of printable ASCII, at most
/// 32 entries, each with a `=`.
///
/// ```
/// use factum::trace::TraceState;
///
/// let state: TraceState = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".parse()?;
/// assert_eq!(state.as_str(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
/// assert!("no-equals-sign".parse::<TraceState>().is_err());
/// # Ok::<(), factum::trace::InvalidTraceContext>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceState(String);

impl TraceState {
    /// The text, as it came.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TraceState {
    type Err = InvalidTraceContext;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HEADER: &str = "tracestate";
        if s.len() > 512 {
            return invalid(HEADER, "longer than 512 characters");
        }
        if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return invalid(HEADER, "not printable ASCII");
        }
        let entries: Vec<&str> = s.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.len() > 32 {
            return invalid(HEADER, "more than 32 entries");
        }
        if entries.iter().any(|e| !e.contains('=')) {
            return invalid(HEADER, "an entry has no '='");
        }
        Ok(TraceState(s.to_owned()))
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_text!(TraceParent);
serde_as_text!(TraceState);

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let p: TraceParent = VALID.parse().unwrap();
        assert_eq!(p.to_string(), VALID);
        assert_eq!(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(p.sampled());
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(serde_json::from_value::<TraceParent>(json).unwrap(), p);
    }

    #[test]
    fn traceparent_refuses_what_the_recommendation_refuses() {
        for (text, why) in [
            ("", "too short"),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", "extra field on version 00"),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "upper case"),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "zero trace id"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "zero parent id"),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "separator"),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", "misplaced dash"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", "flags"),
            ("0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "not ASCII"),
        ] {
            assert!(text.parse::<TraceParent>().is_err(), "{why}: {text:?} was accepted");
        }
        assert!(serde_json::from_str::<TraceParent>("\"00-zz\"").is_err());
    }

    #[test]
    fn a_later_version_keeps_its_first_four_fields() {
        let p: TraceParent =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever".parse().unwrap();
        assert_eq!(p.to_string(), VALID);
        assert!("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x".parse::<TraceParent>().is_err());
    }

    #[test]
    fn tracestate_checks_its_shape() {
        assert!("a=1, b=2".parse::<TraceState>().is_ok());
        assert!("".parse::<TraceState>().is_ok());
        assert!("a=1,b".parse::<TraceState>().is_err());
        assert!("a=\u{7}".parse::<TraceState>().is_err());
        assert!("a=1,".repeat(33).parse::<TraceState>().is_err());
        assert!(format!("a={}", "x".repeat(511)).parse::<TraceState>().is_err());
    }
}
