//! Parsing database and store URLs, refusing typos before anything is opened or created.
//!
//! A value is a URL when it starts with `word:`. Known schemes must be followed by `//`;
//! `s3:/b/x`, `s3:b`, `file:/x`, `redb:/x`, `etcd:/h:1` and `s3//b` are typos, and an
//! unknown scheme (`https://h/b`, `s4://b`) is refused. Every refusal names the URL that was
//! probably meant. A bare path that starts with `word:` must be written `./word:...`.
//!
//! ```
//! use tito::url::{EngineUrl, parse_engine_url, parse_store_url};
//! assert_eq!(parse_engine_url("app.redb").unwrap(), EngineUrl::Redb("app.redb".into()));
//! let e = parse_store_url("s3:/bucket/x").unwrap_err();
//! assert!(e.to_string().contains("did you mean s3://bucket/x?"));
//! ```

use std::fmt;
use std::path::PathBuf;

/// The database URL forms, for error messages.
pub const ENGINE_FORMS: &str = "memory://, redb:///absolute/path, a bare file path (redb), etcd://host:port[,host:port...][/namespace], or (for `tito backup` only) etcd+watch://host:port[,host:port...][/prefix]";

/// The store URL forms, for error messages.
pub const STORE_FORMS: &str = tito_store::URL_FORMS;

const ENGINE_SCHEMES: [&str; 4] = ["memory", "redb", "etcd", "etcd+watch"];
const STORE_SCHEMES: [&str; 5] = ["memory", "file", "s3", "gs", "az"];
/// Schemes followed by a path (`scheme:///abs`), the others by a host.
const PATH_SCHEMES: [&str; 2] = ["redb", "file"];

/// Which kind of URL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlKind {
    /// `--db`: a database (engine).
    Database,
    /// `--store`: a backup store.
    Store,
}

/// A refused URL: what is wrong and, when it can tell, the URL probably meant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct UrlError {
    /// Database or store.
    pub kind: UrlKind,
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub why: String,
    /// The URL probably meant.
    pub suggestion: Option<String>,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, forms) = match self.kind {
            UrlKind::Database => ("database", ENGINE_FORMS),
            UrlKind::Store => ("store", STORE_FORMS),
        };
        let prefix = match self.kind {
            UrlKind::Database => "malformed database URL",
            UrlKind::Store => "bad store URL",
        };
        write!(f, "{prefix} {:?}: {}", self.url, self.why)?;
        match &self.suggestion {
            Some(s) => write!(f, "; did you mean {s}?"),
            None => write!(f, "; expected a {what} URL: {forms}"),
        }
    }
}

/// What a database URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineUrl {
    /// A new in-memory engine.
    Memory,
    /// A redb file.
    Redb(PathBuf),
    /// An etcd cluster (the URL as given).
    Etcd(String),
    /// An etcd cluster (or key prefix) Tito did not write, backed up by a watch (the URL as
    /// given): only `tito backup` takes it; it cannot be opened as a database.
    EtcdWatch(String),
}

/// What a store URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A new in-memory store.
    Memory,
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket and prefix (the URL as given; checked when opened).
    S3(String),
    /// A Google Cloud Storage bucket and prefix (the URL as given; checked when opened).
    Gcs(String),
    /// An Azure Blob Storage container and prefix (the URL as given; checked when opened).
    Azure(String),
}

/// Parse a database URL without opening anything.
pub fn parse_engine_url(url: &str) -> Result<EngineUrl, UrlError> {
    let bad = |why: &str, suggestion: Option<String>| UrlError {
        kind: UrlKind::Database,
        url: url.to_string(),
        why: why.to_string(),
        suggestion,
    };
    if url.is_empty() {
        return Err(bad("it is empty", None));
    }
    if url == "memory://" || url == "memory:" {
        return Ok(EngineUrl::Memory);
    }
    match check_scheme(url, &ENGINE_SCHEMES, &STORE_SCHEMES, UrlKind::Database)? {
        None => Ok(EngineUrl::Redb(PathBuf::from(url))),
        Some(("redb", rest)) => {
            if !rest.starts_with('/') {
                return Err(bad(
                    "a redb URL needs an absolute path (redb:///abs/path)",
                    Some(format!("redb:///{rest}")),
                ));
            }
            Ok(EngineUrl::Redb(PathBuf::from(rest)))
        }
        Some(("etcd+watch", _)) => {
            tito_etcd_watch::WatchConfig::from_url(url).map_err(|e| bad(&e.to_string(), None))?;
            Ok(EngineUrl::EtcdWatch(url.to_string()))
        }
        Some(("etcd", _)) => {
            tito_engine_etcd::EtcdConfig::from_url(url).map_err(|e| bad(&e.to_string(), None))?;
            Ok(EngineUrl::Etcd(url.to_string()))
        }
        Some((_, rest)) if rest.is_empty() || rest == "/" => Ok(EngineUrl::Memory),
        Some(_) => Err(bad("memory:// takes no path", Some("memory://".into()))),
    }
}

/// Parse a store URL without opening anything (bucket settings are checked when opened).
pub fn parse_store_url(url: &str) -> Result<StoreUrl, UrlError> {
    let bad = |why: &str, suggestion: Option<String>| UrlError {
        kind: UrlKind::Store,
        url: url.to_string(),
        why: why.to_string(),
        suggestion,
    };
    if url.is_empty() {
        return Err(bad("it is empty", None));
    }
    match check_scheme(url, &STORE_SCHEMES, &ENGINE_SCHEMES, UrlKind::Store)? {
        None => Ok(StoreUrl::Local(PathBuf::from(url))),
        Some(("file", rest)) => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(bad(
                    "file URLs must be local and absolute (file:///dir)",
                    Some(format!("file:///{path}")),
                ));
            }
            Ok(StoreUrl::Local(PathBuf::from(path)))
        }
        Some(("s3", _)) => Ok(StoreUrl::S3(url.to_string())),
        Some(("gs", _)) => Ok(StoreUrl::Gcs(url.to_string())),
        Some(("az", _)) => Ok(StoreUrl::Azure(url.to_string())),
        Some((_, rest)) if rest.is_empty() || rest == "/" => Ok(StoreUrl::Memory),
        Some(_) => Err(bad("memory:// takes no path", Some("memory://".into()))),
    }
}

/// `None` for a bare path; `Some((scheme, after "//"))` for a well-formed URL of one of
/// `ours`; an error for typos, unknown schemes and the other kind's schemes.
fn check_scheme<'a>(
    url: &'a str,
    ours: &[&'static str],
    theirs: &[&'static str],
    kind: UrlKind,
) -> Result<Option<(&'static str, &'a str)>, UrlError> {
    let bad = |why: String, suggestion: Option<String>| UrlError {
        kind,
        url: url.to_string(),
        why,
        suggestion,
    };
    // `s3//bucket`: the colon is missing.
    for &scheme in ours {
        if let Some(rest) = url.strip_prefix(scheme).and_then(|r| r.strip_prefix("//")) {
            return Err(bad(
                format!("\"{scheme}:\" is missing its colon"),
                Some(suggest(scheme, rest)),
            ));
        }
    }
    let Some((word, rest)) = url.split_once(':') else {
        return Ok(None);
    };
    let is_word = !word.is_empty()
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_word {
        // `./a:b`, `/x/a:b`, `dir/a:b`: a path.
        return Ok(None);
    }
    let scheme = word.to_ascii_lowercase();
    let known = ours.iter().find(|s| **s == scheme);
    let tail = rest.trim_start_matches('/');
    match (known, rest.strip_prefix("//")) {
        (Some(s), Some(after)) => Ok(Some((s, after))),
        (Some(s), None) if *s == "memory" && rest.is_empty() => Ok(Some((s, ""))),
        (Some(s), None) => Err(bad(
            format!("\"{s}:\" must be followed by \"//\""),
            Some(suggest(s, tail)),
        )),
        (None, _) if theirs.contains(&scheme.as_str()) => {
            let other = match kind {
                UrlKind::Database => "a backup store (--store), not a database",
                UrlKind::Store => "a database (--db), not a backup store",
            };
            Err(bad(format!("{scheme}: names {other}"), None))
        }
        (None, _) if kind == UrlKind::Store && matches!(scheme.as_str(), "http" | "https") => {
            // An S3-compatible endpoint with the bucket in the path.
            let (host, path) = tail.split_once('/').unwrap_or((tail, ""));
            let suggestion = (!path.is_empty())
                .then(|| format!("s3://{path}?endpoint={scheme}://{host}"))
                .or_else(|| Some("s3://BUCKET/prefix".to_string()));
            Err(bad(format!("unknown scheme {scheme:?}"), suggestion))
        }
        (None, Some(_)) => {
            let near = ours.iter().find(|s| edit_distance(s, &scheme) <= 1);
            Err(bad(
                format!("unknown scheme {scheme:?}"),
                near.map(|s| suggest(s, tail)),
            ))
        }
        (None, None) => {
            let near = ours.iter().find(|s| edit_distance(s, &scheme) <= 1);
            Err(bad(
                format!("it starts with \"{word}:\" like a URL; write ./{url} to use it as a path"),
                near.map(|s| suggest(s, tail)).or(Some(format!("./{url}"))),
            ))
        }
    }
}

/// `scheme` + the right slashes + `rest` (with its leading slashes dropped).
fn suggest(scheme: &str, rest: &str) -> String {
    let rest = rest.trim_start_matches('/');
    if PATH_SCHEMES.contains(&scheme) {
        format!("{scheme}:///{rest}")
    } else {
        format!("{scheme}://{rest}")
    }
}

/// Levenshtein distance of two short ASCII words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suggestion(r: Result<impl fmt::Debug, UrlError>) -> Option<String> {
        r.expect_err("refused").suggestion
    }

    #[test]
    fn good_urls_parse() {
        assert_eq!(parse_engine_url("memory://"), Ok(EngineUrl::Memory));
        assert_eq!(
            parse_engine_url("redb:///a/b.redb"),
            Ok(EngineUrl::Redb("/a/b.redb".into()))
        );
        assert_eq!(
            parse_engine_url("data/app.redb"),
            Ok(EngineUrl::Redb("data/app.redb".into()))
        );
        assert_eq!(
            parse_engine_url("./s3:odd.redb"),
            Ok(EngineUrl::Redb("./s3:odd.redb".into()))
        );
        assert!(matches!(
            parse_engine_url("etcd://127.0.0.1:2379,127.0.0.1:2380/app"),
            Ok(EngineUrl::Etcd(_))
        ));
        assert_eq!(
            parse_engine_url("etcd+watch://127.0.0.1:2379,127.0.0.1:2380/app/"),
            Ok(EngineUrl::EtcdWatch(
                "etcd+watch://127.0.0.1:2379,127.0.0.1:2380/app/".into()
            ))
        );
        assert!(parse_engine_url("etcd+watch://").is_err());
        assert_eq!(
            parse_store_url("backups"),
            Ok(StoreUrl::Local("backups".into()))
        );
        assert_eq!(
            parse_store_url("file:///x/y"),
            Ok(StoreUrl::Local("/x/y".into()))
        );
        assert_eq!(parse_store_url("memory://"), Ok(StoreUrl::Memory));
        assert_eq!(
            parse_store_url("s3://b/p"),
            Ok(StoreUrl::S3("s3://b/p".into()))
        );
    }

    #[test]
    fn typos_name_the_url_meant() {
        let s = |u| suggestion(parse_store_url(u));
        let e = |u| suggestion(parse_engine_url(u));
        assert_eq!(s("s3:/b/x").as_deref(), Some("s3://b/x"));
        assert_eq!(s("s3:b").as_deref(), Some("s3://b"));
        assert_eq!(s("s3//b/x").as_deref(), Some("s3://b/x"));
        assert_eq!(s("S3:/b").as_deref(), Some("s3://b"));
        assert_eq!(s("gs:/b/x").as_deref(), Some("gs://b/x"));
        assert_eq!(s("az:c").as_deref(), Some("az://c"));
        assert_eq!(s("file:/x").as_deref(), Some("file:///x"));
        assert_eq!(s("file:x").as_deref(), Some("file:///x"));
        assert_eq!(s("s4://b/x").as_deref(), Some("s3://b/x"));
        assert_eq!(
            s("https://h/b").as_deref(),
            Some("s3://b?endpoint=https://h")
        );
        assert_eq!(s("word:thing").as_deref(), Some("./word:thing"));
        assert_eq!(e("redb:/x").as_deref(), Some("redb:///x"));
        assert_eq!(e("redb://x").as_deref(), Some("redb:///x"));
        assert_eq!(e("etcd:/h:1").as_deref(), Some("etcd://h:1"));
        assert_eq!(
            e("etcd+watch:/h:1/p").as_deref(),
            Some("etcd+watch://h:1/p")
        );
        assert_eq!(e("etcd+wach://h:1").as_deref(), Some("etcd+watch://h:1"));
        assert_eq!(e("reb:///x").as_deref(), Some("redb:///x"));
        assert_eq!(e("app:db").as_deref(), Some("./app:db"));
        assert!(parse_engine_url("s3://b").is_err());
        assert!(parse_store_url("redb:///x").is_err());
        assert!(parse_engine_url("https://h/b").is_err());
        assert!(parse_engine_url("").is_err());
        let msg = parse_store_url("s3:/b/x").expect_err("typo").to_string();
        assert!(msg.contains("did you mean s3://b/x?"), "{msg}");
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("s3", "s4"), 1);
        assert_eq!(edit_distance("redb", "reb"), 1);
        assert_eq!(edit_distance("file", "etcd"), 4);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn rest() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}"
    }

    proptest! {
        /// A missing or short `//` is refused, and the URL it suggests is accepted.
        #[test]
        fn store_typos_suggest_a_url_that_parses(r in rest(), form in 0usize..4, scheme in 0usize..2) {
            let scheme = ["s3", "file"][scheme];
            let typo = match form {
                0 => format!("{scheme}:/{r}"),
                1 => format!("{scheme}:{r}"),
                2 => format!("{scheme}//{r}"),
                _ => format!("{}:/{r}", scheme.to_uppercase()),
            };
            let e = parse_store_url(&typo).expect_err("typo");
            let meant = e.suggestion.expect("a suggestion");
            prop_assert!(parse_store_url(&meant).is_ok(), "{typo} -> {meant}");
            prop_assert!(meant.ends_with(&r));
        }

        #[test]
        fn engine_typos_suggest_a_url_that_parses(r in rest(), form in 0usize..3) {
            let typo = match form {
                0 => format!("redb:/{r}"),
                1 => format!("redb:{r}"),
                _ => format!("redb//{r}"),
            };
            let e = parse_engine_url(&typo).expect_err("typo");
            let meant = e.suggestion.expect("a suggestion");
            prop_assert_eq!(parse_engine_url(&meant), Ok(EngineUrl::Redb(format!("/{r}").into())));
        }

        /// Paths without a `word:` start are paths, as given.
        #[test]
        fn plain_paths_are_paths(r in rest(), dot in any::<bool>()) {
            let path = if dot { format!("./{r}:x") } else { r.clone() };
            prop_assert_eq!(parse_store_url(&path), Ok(StoreUrl::Local(path.clone().into())));
            prop_assert_eq!(parse_engine_url(&path), Ok(EngineUrl::Redb(path.into())));
        }
    }
}
