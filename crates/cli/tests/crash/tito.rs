//! Running `tito` for one case: its directory, database file, store URL and the settings
//! the store needs (the S3 test server's `AWS_*` variables), plus readers of its outputs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::oracle::State;
use crate::support;

/// The database file of every case, relative to its directory.
pub const DB: &str = "app.redb";

/// One case's world.
pub struct Env {
    /// Holds the database, restore targets and a local store.
    pub dir: tempfile::TempDir,
    /// The store URL (a directory name relative to `dir`, or `s3://...`).
    pub store: String,
    /// Extra environment for every run (S3 settings).
    pub vars: Vec<(&'static str, String)>,
    /// What the case is, for messages.
    pub name: String,
    /// The seed, for messages.
    pub seed: u64,
    /// What the case did lately (shown when it fails).
    pub journal: std::cell::RefCell<Vec<String>>,
}

impl Env {
    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `tito args`, not started, output captured.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = support::command(self.path(), args);
        cmd.envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Start `tito args` in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("spawn tito")
    }

    /// Run `tito args` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run tito")
    }

    /// Run and require exit 0; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        if !o.status.success() {
            self.fail(&format!(
                "tito {args:?} failed ({:?}): {}",
                o.status.code(),
                support::stderr(&o)
            ));
        }
        support::stdout(&o)
    }

    /// `--db app.redb --store STORE` then `more`.
    pub fn db_store<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--db", DB, "--store", self.store.as_str()];
        args.extend_from_slice(more);
        args
    }

    /// `--store STORE` then `more`.
    pub fn store_args<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--store", self.store.as_str()];
        args.extend_from_slice(more);
        args
    }

    /// Remember a step for the failure message.
    pub fn note(&self, step: impl Into<String>) {
        let mut j = self.journal.borrow_mut();
        if j.len() >= 16 {
            j.remove(0);
        }
        j.push(step.into());
    }

    /// Panic naming the case and how to replay it.
    pub fn fail(&self, msg: &str) -> ! {
        let log = std::fs::read_to_string(self.file("holder.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        panic!(
            "crash case {} (replay with TITO_CRASH_SEED={}): {msg}\nlast steps:\n  {}\nholder log (tail):\n{tail}",
            self.name,
            self.seed,
            self.journal.borrow().join("\n  ")
        )
    }

    /// The path of a file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// The value of `key` in the database (opened here or through its holder).
    pub fn get(&self, key: &str) -> Option<String> {
        let o = self.run(&["--db", DB, "kv", "get", key]);
        match o.status.code() {
            Some(0) => Some(
                support::stdout(&o)
                    .strip_suffix('\n')
                    .expect("a line")
                    .to_string(),
            ),
            Some(3) => None,
            _ => self.fail(&format!(
                "kv get {key} failed ({:?}): {}",
                o.status.code(),
                support::stderr(&o)
            )),
        }
    }

    /// The user keys of database `db` (`tito dump`), or the failed run.
    pub fn dump(&self, db: &str) -> Result<State, Output> {
        let o = self.run(&["--db", db, "dump"]);
        if !o.status.success() {
            return Err(o);
        }
        Ok(parse_dump(&support::stdout(&o)))
    }

    /// The user keys of `db`, which must open.
    pub fn must_dump(&self, db: &str) -> State {
        self.dump(db).unwrap_or_else(|o| {
            self.fail(&format!(
                "dump of {db} failed ({:?}): {}",
                o.status.code(),
                support::stderr(&o)
            ))
        })
    }

    /// `tito status --json` of the store.
    pub fn status(&self) -> Value {
        let out = self.ok(&self.store_args(&["--json", "status"]));
        serde_json::from_str(&out).expect("status JSON")
    }
}

/// `tito dump` lines to a map (the harness writes UTF-8 user keys only, no queue).
pub fn parse_dump(text: &str) -> State {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("dump line is JSON");
            let key = v["key"].as_str().expect("UTF-8 key").to_string();
            let value = v["value"].as_str().expect("UTF-8 value").to_string();
            (key, value)
        })
        .collect()
}

/// Whether a failed open says the database holds an unfinished restore.
pub fn refused_as_partial(o: &Output) -> bool {
    !o.status.success() && support::stderr(o).contains("unfinished restore")
}
