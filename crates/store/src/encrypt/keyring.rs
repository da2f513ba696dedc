//! Encryption keys and keyring files.
//!
//! A keyring file is text, one key per line, oldest first; the last key seals new objects
//! and every key opens the objects it sealed:
//!
//! ```text
//! # Tito encryption keyring. Keep it secret; without it the backups cannot be read.
//! tito-key-v1 <key id: 16 hex digits> <key: 64 hex digits>
//! ```
//!
//! A key id is the first 8 bytes of `blake3::derive_key("tito encryption key id v1", key)`:
//! it names a key without revealing it, and a line whose id does not match its key is
//! refused. Files are written with mode 0600 and refused when others may read them.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
const LINE_TAG: &str = "tito-key-v1";
const ID_CONTEXT: &str = "tito encryption key id v1";
const FILE_HEADER: &str = "# Tito encryption keyring: one key per line, oldest first; the last one encrypts new objects.\n\
     # Keep it secret and keep a copy: without it the backups cannot be read.\n";

/// The id of a key (derived from it; safe to show and to record in the repository).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub(crate) [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }

    /// Parse 16 hex digits.
    pub fn parse(s: &str) -> Option<KeyId> {
        let v = hex_decode(s)?;
        Some(KeyId(v.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One 256-bit key. Its bytes are wiped when dropped and never shown by `Debug`.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    bytes: Zeroizing<[u8; 32]>,
}

impl Key {
    /// A new random key.
    pub fn generate() -> Key {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::fill(&mut bytes[..]);
        Key::from_bytes(bytes)
    }

    pub(crate) fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Key {
        let derived = blake3::derive_key(ID_CONTEXT, &bytes[..]);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&derived[..KEY_ID_LEN]);
        Key {
            id: KeyId(id),
            bytes,
        }
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    fn line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{LINE_TAG} {} {}\n", self.id, hex(&self.bytes[..])))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}, <redacted>)", self.id)
    }
}

/// Why a keyring could not be read or written (messages name the file, never a key).
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read or written.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a keyring.
    #[error("key file {}: line {line}: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The file holds no key.
    #[error("key file {} holds no key (create one with `tito key new {}`)", path.display(), path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Others than its owner may read the file.
    #[error("key file {} may be read by other users (mode {mode:o}); run `chmod 600 {}`", path.display(), path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `new` would overwrite a file.
    #[error("key file {} already exists; refusing to overwrite it (add a key with `tito key add`)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// The keys an encrypted store may use: the newest seals, all of them open.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring of one new random key.
    pub fn generate() -> Keyring {
        Keyring {
            keys: vec![Key::generate()],
        }
    }

    /// A keyring of `keys`, oldest first (at least one).
    pub fn from_keys(keys: Vec<Key>) -> Option<Keyring> {
        (!keys.is_empty()).then_some(Keyring { keys })
    }

    /// The key new objects are sealed with (the newest).
    pub fn write_key(&self) -> &Key {
        self.keys.last().expect("a keyring holds at least one key")
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The ids of every key, oldest first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// The key with `id`, if held.
    pub fn get(&self, id: &KeyId) -> Option<&Key> {
        self.keys.iter().rev().find(|k| k.id == *id)
    }

    /// This keyring with a new random key added as the newest.
    pub fn with_new_key(&self) -> Keyring {
        let mut keys = self.keys.clone();
        keys.push(Key::generate());
        Keyring { keys }
    }

    /// Read a keyring file (refused if group or others may read it).
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        check_mode(path, &meta)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Keyring::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Keyring, KeyringError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |problem: &str| KeyringError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                problem: problem.to_string(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_ascii_whitespace();
            let (Some(LINE_TAG), Some(id), Some(key), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(
                    "expected `tito-key-v1 <16 hex digits> <64 hex digits>`",
                ));
            };
            let id = KeyId::parse(id).ok_or_else(|| bad("the key id is not 16 hex digits"))?;
            let bytes = Zeroizing::new(
                hex_decode(key)
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .ok_or_else(|| bad("the key is not 64 hex digits"))?,
            );
            let key = Key::from_bytes(bytes);
            if key.id != id {
                return Err(bad(
                    "the key id does not match the key (the line was altered)",
                ));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(bad("the same key appears twice"));
            }
            keys.push(key);
        }
        Keyring::from_keys(keys).ok_or_else(|| KeyringError::Empty {
            path: path.to_path_buf(),
        })
    }

    fn text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(FILE_HEADER.to_string());
        for k in &self.keys {
            s.push_str(&k.line());
        }
        s
    }

    /// Write a new keyring file with mode 0600; an existing file is never overwritten.
    pub fn create_file(&self, path: &Path) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyringError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
        f.write_all(self.text().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Replace the keyring file at `path` with this keyring, atomically (a temporary file
    /// with mode 0600 beside it, fsynced, renamed over it).
    pub fn replace_file(&self, path: &Path) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".tito-key-")
            .permissions(owner_only())
            .tempfile_in(dir)
            .map_err(io)?;
        tmp.write_all(self.text().as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn owner_only() -> std::fs::Permissions {
    #[cfg(unix)]
    {
        std::os::unix::fs::PermissionsExt::from_mode(0o600)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(".").expect("cwd").permissions()
    }
}

fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyringError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let _ = (path, meta);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_refuse_overwrite_and_exposure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ring");
        let ring = Keyring::generate();
        ring.create_file(&path).expect("create");
        assert!(matches!(
            ring.create_file(&path),
            Err(KeyringError::Exists { .. })
        ));
        let back = Keyring::load(&path).expect("load");
        assert_eq!(back.ids(), ring.ids());
        assert_eq!(back.write_key().bytes(), ring.write_key().bytes());
        let two = back.with_new_key();
        two.replace_file(&path).expect("replace");
        let back = Keyring::load(&path).expect("load 2");
        assert_eq!(back.ids(), two.ids());
        assert_eq!(back.write_key().id(), two.keys()[1].id());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!format!("{back:?}").contains(&text.lines().last().expect("line")[29..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(
                Keyring::load(&path),
                Err(KeyringError::Exposed { .. })
            ));
        }
    }

    #[test]
    fn altered_lines_are_refused() {
        let ring = Keyring::generate();
        let text = ring.text();
        let p = Path::new("k");
        let flipped = text.replacen(LINE_TAG, "tito-key-v2", 1);
        assert!(Keyring::parse(p, &flipped).is_err());
        // Change the last hex digit of the key: the id no longer matches.
        let mut altered = text.trim_end().to_string();
        let last = altered.pop().expect("digit");
        altered.push(if last == '0' { '1' } else { '0' });
        let err = Keyring::parse(p, &altered).expect_err("altered");
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(matches!(
            Keyring::parse(p, "# nothing\n"),
            Err(KeyringError::Empty { .. })
        ));
    }
}
