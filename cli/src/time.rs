//! Points in time on the command line: an RFC 3339 timestamp, a date, or a duration ago.

use chrono::{DateTime, NaiveDate, Utc};

use crate::error::CliError;

/// A duration like `30d`, `12h`, `90m`, `45s` or `2w`.
pub(crate) fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 =
        digits.parse().map_err(|_| format!("{text:?} is not a duration like 30d, 12h, 90m or 45s"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: a duration's unit is s, m, h, d or w")),
    };
    n.checked_mul(seconds)
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

/// A timestamp (`2026-01-31T12:00:00Z`), a date (`2026-01-31`, midnight UTC), or a
/// duration before `now` (`30d`).
pub(crate) fn parse_point(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    let ago = parse_duration(text).map_err(|_| {
        CliError::Usage(format!(
            "{text:?} is neither a timestamp (2026-01-31T12:00:00Z), a date (2026-01-31) nor a duration (30d, 12h, 90m, 45s)"
        ))
    })?;
    now.checked_sub_signed(ago).ok_or_else(|| CliError::Usage(format!("{text:?} reaches too far back")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_duration("90m").unwrap(), chrono::Duration::minutes(90));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("99999999999999999w").is_err());
    }

    #[test]
    fn points() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_point("1d", now).unwrap().to_rfc3339(), "2026-02-28T00:00:00+00:00");
        assert_eq!(parse_point("2026-01-31", now).unwrap().to_rfc3339(), "2026-01-31T00:00:00+00:00");
        assert_eq!(
            parse_point("2026-01-31T12:00:00+01:00", now).unwrap().to_rfc3339(),
            "2026-01-31T11:00:00+00:00"
        );
        assert!(matches!(parse_point("yesterday", now), Err(CliError::Usage(_))));
    }
}
