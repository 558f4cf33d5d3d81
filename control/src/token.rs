//! Join tokens in swarmkit's v1 format.
//!
//! `SWMTKN-1-<root CA digest>-<secret>`: the digest is the SHA-256 of the root CA certificate
//! in base 36, left-padded with `0` to 50 characters; the secret is 128 random bits in base 36,
//! padded to 25. The digest half lets a joining node check the CA it downloads over an
//! unauthenticated TLS connection before it sends the secret; the secret half is what the
//! CA checks before it signs a certificate. Worker and manager tokens differ only in secret.

use std::fmt;

use num_bigint::BigUint;

use crate::ca;

const PREFIX: &str = "SWMTKN";
const VERSION: &str = "1";
/// ceil(log36(2^256)): characters of a base-36 SHA-256 digest.
pub const DIGEST_LEN: usize = 50;
/// ceil(log36(2^128)): characters of a base-36 128-bit secret.
pub const SECRET_LEN: usize = 25;
/// Length of a whole token: `SWMTKN-1-` + digest + `-` + secret.
pub const TOKEN_LEN: usize = 9 + DIGEST_LEN + 1 + SECRET_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// swarmkit's `errInvalidJoinToken`.
    #[error("invalid join token")]
    Invalid,
    /// swarmkit's wording when the downloaded root CA does not hash to the token's digest.
    #[error("remote CA does not match fingerprint. Expected: {expected}")]
    CaMismatch {
        /// Hex of the digest the token carries.
        expected: String,
        /// Hex of the digest of the certificate actually received (not shown to users, as in
        /// swarmkit, but kept for logs).
        got: String,
    },
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The root CA digest, base 36, exactly [`DIGEST_LEN`] lowercase characters.
    pub ca_digest_b36: String,
    /// The secret, base 36, exactly [`SECRET_LEN`] lowercase characters.
    pub secret: String,
}

// Tokens are credentials: never print the secret.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken").field("ca_digest_b36", &self.ca_digest_b36).finish_non_exhaustive()
    }
}

/// The token text, as `docker swarm join-token` prints it.
impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.ca_digest_b36, self.secret)
    }
}

/// A new token for the CA whose digest is `ca_digest`, with a fresh random secret.
pub fn generate(ca_digest: &[u8; 32]) -> String {
    let secret: [u8; 16] = rand::random();
    JoinToken { ca_digest_b36: base36(ca_digest, DIGEST_LEN), secret: base36(&secret, SECRET_LEN) }.to_string()
}

/// Parses a v1 token. Any deviation from the format is [`TokenError::Invalid`]. Upper-case
/// base-36 digits are accepted (Go's `big.Int.SetString` does) and normalised to lower case.
pub fn parse(token: &str) -> Result<JoinToken, TokenError> {
    let parts: Vec<&str> = token.split('-').collect();
    let [PREFIX, VERSION, digest, secret] = parts[..] else {
        return Err(TokenError::Invalid);
    };
    if digest.len() != DIGEST_LEN || secret.len() != SECRET_LEN {
        return Err(TokenError::Invalid);
    }
    let token = JoinToken { ca_digest_b36: digest.to_ascii_lowercase(), secret: secret.to_ascii_lowercase() };
    if token.ca_digest().is_none() || from_base36(&token.secret, 16).is_none() {
        return Err(TokenError::Invalid);
    }
    Ok(token)
}

impl JoinToken {
    /// The root CA digest the token carries, or `None` if the field is not a valid 256-bit
    /// base-36 number (only possible for a hand-built value; [`parse`] checks it).
    pub fn ca_digest(&self) -> Option<[u8; 32]> {
        if self.ca_digest_b36.len() != DIGEST_LEN {
            return None;
        }
        from_base36(&self.ca_digest_b36, 32)?.try_into().ok()
    }

    /// Whether `cert_der` is the root CA this token was made for.
    pub fn matches_ca(&self, cert_der: &[u8]) -> bool {
        self.ca_digest() == Some(ca::digest(cert_der))
    }

    /// Whether `other` is the same token. The digest is public; the secret is compared in
    /// constant time so that response timing tells an attacker nothing about it.
    pub fn same_as(&self, other: &JoinToken) -> bool {
        let digest_eq = self.ca_digest_b36 == other.ca_digest_b36;
        constant_time_eq(self.secret.as_bytes(), other.secret.as_bytes()) & digest_eq
    }
}

/// The error a joining node reports when the root CA it downloaded is not the one the token
/// names.
pub fn ca_mismatch_error(expected: &JoinToken, got_cert_der: &[u8]) -> TokenError {
    let expected = match expected.ca_digest() {
        Some(d) => hex::encode(d),
        None => expected.ca_digest_b36.clone(),
    };
    TokenError::CaMismatch { expected, got: hex::encode(ca::digest(got_cert_der)) }
}

fn base36(bytes: &[u8], width: usize) -> String {
    let digits = BigUint::from_bytes_be(bytes).to_str_radix(36);
    format!("{digits:0>width$}")
}

/// Decodes lowercase base 36 into exactly `len` big-endian bytes, or `None` if a character is
/// not a base-36 digit or the value does not fit.
fn from_base36(digits: &str, len: usize) -> Option<Vec<u8>> {
    // `BigUint::parse_bytes` tolerates `_` separators; the token format does not.
    if !digits.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) {
        return None;
    }
    let value = BigUint::parse_bytes(digits.as_bytes(), 36)?;
    let bytes = value.to_bytes_be();
    if bytes.len() > len {
        return None;
    }
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(&bytes);
    Some(out)
}

/// Equal-length inputs are compared without data-dependent branches.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::RootCa;

    #[test]
    fn generate_parse_round_trip() {
        let ca = RootCa::generate().unwrap();
        let digest = ca::digest(ca.cert_der());
        let text = generate(&digest);
        assert_eq!(text.len(), TOKEN_LEN);
        assert_eq!(TOKEN_LEN, 85);
        assert!(text.starts_with("SWMTKN-1-"));
        let token = parse(&text).unwrap();
        assert_eq!(token.to_string(), text);
        assert_eq!(token.ca_digest(), Some(digest));
        assert_eq!(token.ca_digest_b36.len(), DIGEST_LEN);
        assert_eq!(token.secret.len(), SECRET_LEN);
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn padding_keeps_small_values_full_width() {
        let token = parse(&generate(&[0; 32])).unwrap();
        assert_eq!(token.ca_digest_b36, "0".repeat(DIGEST_LEN));
        let max = parse(&generate(&[0xff; 32])).unwrap();
        assert_eq!(max.ca_digest(), Some([0xff; 32]));
    }

    #[test]
    fn swarmkit_token_parses() {
        // A token from swarmkit's own tests: 50 + 25 base-36 characters.
        let t = "SWMTKN-1-1kxftv4ofnc6mt30lmgipg6ngf9luhwqopfk1tz6bdmnkubg0e-4myj5xihyto11dg1cn55w8p61";
        let token = parse(t).unwrap();
        assert_eq!(token.to_string(), t);
        assert!(token.ca_digest().is_some());
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = generate(&[7; 32]);
        let JoinToken { ca_digest_b36: d, secret: s } = parse(&good).unwrap();
        let cases = [
            String::new(),
            format!("SWMTKX-1-{d}-{s}"),
            format!("swmtkn-1-{d}-{s}"),
            format!("SWMTKN-2-{d}-{s}"),
            format!("SWMTKN-2-1-{d}-{s}"), // FIPS v2 tokens are not supported
            format!("SWMTKN-1-{d}"),
            format!("SWMTKN-1-{d}-{s}-x"),
            format!("SWMTKN-1-{}-{s}", &d[1..]),
            format!("SWMTKN-1-{d}0-{s}"),
            format!("SWMTKN-1-{d}-{}", &s[1..]),
            format!("SWMTKN-1-{d}-{s}0"),
            format!("SWMTKN-1-{}!-{s}", &d[1..]),
            format!("SWMTKN-1-{d}-{}_", &s[1..]),
            format!("SWMTKN-1-{d}-{} ", &s[1..]),
            format!("SWMTKN-1-{}-{s}", "z".repeat(DIGEST_LEN)), // > 2^256
            format!("SWMTKN-1-{d}-{}", "z".repeat(SECRET_LEN)), // > 2^128
        ];
        for case in cases {
            assert_eq!(parse(&case), Err(TokenError::Invalid), "{case:?}");
        }
        assert_eq!(TokenError::Invalid.to_string(), "invalid join token");
    }

    #[test]
    fn upper_case_digits_are_accepted() {
        let good = generate(&[9; 32]);
        let upper = format!("SWMTKN-1-{}", good[9..].to_ascii_uppercase());
        assert!(parse(&upper).unwrap().same_as(&parse(&good).unwrap()));
    }

    #[test]
    fn matches_ca_only_for_its_own_root() {
        let ca = RootCa::generate().unwrap();
        let other = RootCa::generate().unwrap();
        let token = parse(&generate(&ca::digest(ca.cert_der()))).unwrap();
        assert!(token.matches_ca(ca.cert_der()));
        assert!(!token.matches_ca(other.cert_der()));
    }

    #[test]
    fn ca_mismatch_wording() {
        let ca = RootCa::generate().unwrap();
        let other = RootCa::generate().unwrap();
        let digest = ca::digest(ca.cert_der());
        let token = parse(&generate(&digest)).unwrap();
        let err = ca_mismatch_error(&token, other.cert_der());
        assert_eq!(err.to_string(), format!("remote CA does not match fingerprint. Expected: {}", hex::encode(digest)));
        let TokenError::CaMismatch { got, .. } = err else { panic!("wrong variant") };
        assert_eq!(got, hex::encode(ca::digest(other.cert_der())));
    }

    #[test]
    fn same_as_compares_digest_and_secret() {
        let a = parse(&generate(&[1; 32])).unwrap();
        let b = parse(&generate(&[1; 32])).unwrap();
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&b), "fresh secrets differ");
        let other_ca =
            JoinToken { ca_digest_b36: parse(&generate(&[2; 32])).unwrap().ca_digest_b36, secret: a.secret.clone() };
        assert!(!a.same_as(&other_ca));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
