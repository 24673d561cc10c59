//! Value rules shared by the aggregates and the HTTP layer.
//!
//! Each rule comes with the ECMA-262 pattern that the OpenAPI document states for it
//! (`*_PATTERN`, with [`MAX_TEXT`] and [`MAX_ID`] as the lengths); the functions here are
//! what the service enforces, and the schemathesis run checks that the two agree.

/// The longest name, email or reason accepted, in characters.
pub const MAX_TEXT: usize = 200;
/// The longest id or SKU accepted.
pub const MAX_ID: usize = 64;
/// The largest quantity on one line.
pub const MAX_QUANTITY: i64 = 10_000;
/// The largest unit price, in cents.
pub const MAX_UNIT_PRICE: i64 = 100_000_000;

/// What [`check_id`] accepts.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// What [`check_text`] accepts (with a length of 1 to [`MAX_TEXT`]): no control
/// characters (Unicode category Cc).
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";
/// What [`check_name`] accepts (with a length of 1 to [`MAX_TEXT`]): no control
/// characters, and at least one that is not white space (what `str::trim` removes).
pub const NAME_PATTERN: &str = concat!(
    r"^[^\u0000-\u001f\u007f-\u009f]*",
    r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^\u0000-\u001f\u007f-\u009f]*$"
);
/// What [`check_email`] accepts (with a length of at most [`MAX_TEXT`]): printable
/// ASCII without spaces, `local@domain`, the domain two or more dot-separated labels.
pub const EMAIL_PATTERN: &str =
    r"^[\x21-\x3f\x41-\x7e]+@[\x21-\x2d\x2f-\x3f\x41-\x7e]+(\.[\x21-\x2d\x2f-\x3f\x41-\x7e]+)+$";

/// What factum accepts as a topic pattern (with a length of 1 to [`MAX_TOPIC`]):
/// dot-separated words of ASCII letters, digits, `_` and `-`, or a whole `*` or `#`.
pub const TOPIC_PATTERN: &str = r"^([A-Za-z0-9_-]+|\*|#)(\.([A-Za-z0-9_-]+|\*|#))*$";
/// The longest topic pattern factum accepts.
pub const MAX_TOPIC: usize = 255;

/// A name: 1 to [`MAX_TEXT`] characters, no control characters, not only white space.
/// The name is stored trimmed.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    check_text(name)?;
    if name.trim().is_empty() {
        return Err("must not be blank");
    }
    Ok(())
}

/// Free text (a reason): at most [`MAX_TEXT`] characters, no control characters.
pub fn check_text(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("must not be empty");
    }
    if text.chars().count() > MAX_TEXT {
        return Err("longer than 200 characters");
    }
    if text.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

/// A plausible email address: `local@domain.tld`, ASCII, no spaces, at most
/// [`MAX_TEXT`] characters. Deliverability is not this layer's business.
pub fn check_email(email: &str) -> Result<(), &'static str> {
    if email.len() > MAX_TEXT {
        return Err("longer than 200 characters");
    }
    if !email.is_ascii() || email.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
        return Err("must be ASCII without spaces");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("must contain one @");
    };
    if local.is_empty() || domain.contains('@') {
        return Err("must be local@domain");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err("the domain must have a dot between non-empty labels");
    }
    Ok(())
}

/// An id or SKU: 1 to [`MAX_ID`] characters from `A-Z a-z 0-9 - _`.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err("must be 1 to 64 characters");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("may hold only letters, digits, '-' and '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "ada.lovelace+shop@example.com"] {
            assert_eq!(check_email(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a@b..co", "a b@c.de", "ä@b.co", "a@b.co\n"] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_and_names() {
        assert!(check_id("ord-1_A").is_ok());
        for bad in ["", "a/b", "'; DROP TABLE x; --", &"x".repeat(65), "ä"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("  Ada  ").is_ok());
        assert!(check_name("   ").is_err());
        assert!(check_name("a\u{0}b").is_err());
        assert!(check_name(&"é".repeat(201)).is_err());
        assert!(check_name(&"é".repeat(200)).is_ok());
    }
}
