//! The harness's own record of what the database must hold: the state after every
//! acknowledged commit, indexed by LSN (LSNs are dense: each captured transaction takes the
//! next one, and an in-place restore to P makes the next commit P + 1).

use std::collections::BTreeMap;

/// Keys to values, as `tito dump` shows user keys.
pub type State = BTreeMap<String, String>;

/// One write of the harness (each value is unique, so a read tells whether it landed).
#[derive(Clone, Debug)]
pub enum Write {
    /// `kv put key value`.
    Put(String, String),
    /// `kv del key` (only of a key that exists).
    Del(String),
}

impl Write {
    /// The `tito` arguments after `--db FILE`.
    pub fn args(&self) -> Vec<String> {
        match self {
            Write::Put(k, v) => vec!["kv".into(), "put".into(), k.clone(), v.clone()],
            Write::Del(k) => vec!["kv".into(), "del".into(), k.clone()],
        }
    }

    /// The key it writes.
    pub fn key(&self) -> &str {
        match self {
            Write::Put(k, _) | Write::Del(k) => k,
        }
    }

    /// Whether `value` (what `kv get` now reads for the key) shows it committed. Only
    /// meaningful right after the write, with nothing else writing the key.
    pub fn landed(&self, value: Option<&str>) -> bool {
        match self {
            Write::Put(_, v) => value == Some(v.as_str()),
            Write::Del(_) => value.is_none(),
        }
    }
}

/// The states at every LSN of the live history.
#[derive(Debug)]
pub struct Oracle {
    states: Vec<State>,
}

impl Oracle {
    /// An empty database (LSN 0).
    pub fn new() -> Self {
        Oracle {
            states: vec![State::new()],
        }
    }

    /// The LSN of the newest acknowledged commit.
    pub fn lsn(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    /// The state now.
    pub fn now(&self) -> &State {
        self.states.last().expect("LSN 0 is always there")
    }

    /// The state after commit `lsn`.
    pub fn at(&self, lsn: u64) -> &State {
        &self.states[lsn as usize]
    }

    /// Record a committed write.
    pub fn commit(&mut self, w: &Write) {
        let mut s = self.now().clone();
        match w {
            Write::Put(k, v) => {
                s.insert(k.clone(), v.clone());
            }
            Write::Del(k) => {
                s.remove(k);
            }
        }
        self.states.push(s);
    }

    /// An in-place restore to `lsn` happened: the history after it is gone.
    pub fn rewind(&mut self, lsn: u64) {
        self.states.truncate(lsn as usize + 1);
    }
}
