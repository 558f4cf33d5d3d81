//! API version handling: the `/v1.NN` path prefix and the headers every response carries.

use axum::extract::Request;
use axum::http::header::{HeaderValue, SERVER};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::HttpError;

/// The newest Engine API version served (docker 28.3–28.5).
pub const API_VERSION: &str = "1.51";
/// The oldest version accepted in a path prefix (the first with swarm mode).
pub const MIN_API_VERSION: &str = "1.24";

/// Removes a `/v1.NN` prefix, refusing versions outside [`MIN_API_VERSION`]..=[`API_VERSION`]
/// with dockerd's messages, and stamps `Api-Version` and `Server` on every response.
pub async fn strip_version_prefix(mut req: Request, next: Next) -> Response {
    let mut response = match split_version(req.uri().path()) {
        None => next.run(req).await,
        Some((version, rest)) => match check_version(version) {
            Err(e) => e.into_response(),
            Ok(()) => {
                let rest = if rest.is_empty() { "/" } else { rest };
                let new_path_and_query = match req.uri().query() {
                    Some(q) => format!("{rest}?{q}"),
                    None => rest.to_string(),
                };
                match new_path_and_query.parse::<Uri>() {
                    Ok(uri) => {
                        *req.uri_mut() = uri;
                        next.run(req).await
                    }
                    Err(e) => HttpError::bad_request(format!("invalid request URI: {e}")).into_response(),
                }
            }
        },
    };
    let headers = response.headers_mut();
    headers.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    headers.insert(SERVER, HeaderValue::from_static(concat!("Shoal/", env!("CARGO_PKG_VERSION"), " (linux)")));
    response
}

/// `/v1.51/info` → `("1.51", "/info")`; paths without a version prefix → `None`.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let after_v = path.strip_prefix("/v")?;
    let end = after_v.find('/').unwrap_or(after_v.len());
    let version = &after_v[..end];
    let looks_like_version = !version.is_empty()
        && version.chars().all(|c| c.is_ascii_digit() || c == '.')
        && version.starts_with(|c: char| c.is_ascii_digit());
    looks_like_version.then(|| (version, &after_v[end..]))
}

fn check_version(version: &str) -> Result<(), HttpError> {
    if compare_versions(version, MIN_API_VERSION) == std::cmp::Ordering::Less {
        return Err(HttpError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please \
             upgrade your client to a newer version"
        )));
    }
    if compare_versions(version, API_VERSION) == std::cmp::Ordering::Greater {
        return Err(HttpError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    Ok(())
}

/// Compares dotted versions numerically (`1.9 < 1.24`), like moby's `versions.Compare`.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| s.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    let (a, b) = (parse(a), parse(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied().unwrap_or(0), b.get(i).copied().unwrap_or(0));
        if x != y {
            return x.cmp(&y);
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn splits_only_numeric_version_prefixes() {
        assert_eq!(split_version("/v1.51/info"), Some(("1.51", "/info")));
        assert_eq!(split_version("/v1.24/nodes/abc/update"), Some(("1.24", "/nodes/abc/update")));
        assert_eq!(split_version("/v1.51"), Some(("1.51", "")));
        assert_eq!(split_version("/info"), None);
        assert_eq!(split_version("/version"), None);
        assert_eq!(split_version("/vfoo/info"), None);
    }

    #[test]
    fn compares_versions_numerically() {
        assert_eq!(compare_versions("1.9", "1.24"), Ordering::Less);
        assert_eq!(compare_versions("1.51", "1.51"), Ordering::Equal);
        assert_eq!(compare_versions("1.52", "1.51"), Ordering::Greater);
        assert_eq!(compare_versions("2", "1.51"), Ordering::Greater);
    }
}
