//! `tito key new|add|list PATH`: keyring files for encryption at rest. Keys are written to
//! files with mode 0600 and never printed; only their ids are.

use tito_store::{Keyring, KeyringError};

use crate::args::KeyCommand;
use crate::exit::{self, CliError, Result};

fn key_error(e: KeyringError) -> CliError {
    let code = match &e {
        KeyringError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            exit::NOT_FOUND
        }
        KeyringError::Exists { .. } => exit::REFUSED,
        _ => exit::USAGE,
    };
    CliError::new(code, e.to_string())
}

/// Run a `tito key` subcommand.
pub fn run(cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::New { path } => {
            let ring = Keyring::generate();
            ring.create_file(&path).map_err(key_error)?;
            crate::outln!(
                "created keyring {} with key {} (mode 0600); keep a copy somewhere safe: without it the backups cannot be read",
                path.display(),
                ring.write_key().id()
            )?;
        }
        KeyCommand::Add { path } => {
            let ring = Keyring::load(&path).map_err(key_error)?.with_new_key();
            ring.replace_file(&path).map_err(key_error)?;
            crate::outln!(
                "added key {} to {} ({} keys); it encrypts new objects from now on, and `tito rekey` re-encrypts the older ones",
                ring.write_key().id(),
                path.display(),
                ring.keys().len()
            )?;
        }
        KeyCommand::List { path } => {
            let ring = Keyring::load(&path).map_err(key_error)?;
            let newest = ring.write_key().id();
            for id in ring.ids() {
                let role = if id == newest {
                    "encrypts new objects"
                } else {
                    "reads only"
                };
                crate::outln!("{id}  {role}")?;
            }
        }
    }
    Ok(())
}

/// The CLI error for a keyring that cannot be read.
pub fn keyring_error(e: KeyringError) -> CliError {
    key_error(e)
}
