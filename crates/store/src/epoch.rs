//! The epoch file of controller mode (`epochFileCheckpoint`): for every master epoch the commit
//! log has data of, the offset where that epoch's data starts. Two replicas agree on the log
//! up to the end of the last epoch they both have with the same start; past it one of them
//! holds data the other master never wrote, which is the tail a rejoining replica cuts.
//!
//! Text, one `epoch startOffset` line per epoch, replaced atomically (temp file + rename):
//! it changes once per election, so there is nothing to gain from anything cleverer.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};

/// One epoch and where its data starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The epochs of one commit log, oldest first, epochs and starts both non-decreasing.
#[derive(Debug)]
pub struct EpochFile {
    path: PathBuf,
    entries: Vec<Epoch>,
}

impl EpochFile {
    /// Reads `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<EpochFile> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).context(|| format!("read {}", path.display())),
        };
        let mut entries: Vec<Epoch> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(e, s)| Some((e.trim().parse().ok()?, s.trim().parse().ok()?)));
            let Some((epoch, start_offset)) = parsed else {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    message: format!("line {}: `{line}` is not `epoch startOffset`", n + 1),
                });
            };
            let e = Epoch {
                epoch,
                start_offset,
            };
            if entries
                .last()
                .is_some_and(|l| l.epoch >= epoch || l.start_offset > start_offset)
            {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    message: format!("line {}: epochs out of order", n + 1),
                });
            }
            entries.push(e);
        }
        Ok(EpochFile {
            path: path.to_owned(),
            entries,
        })
    }

    pub fn entries(&self) -> &[Epoch] {
        &self.entries
    }

    pub fn last_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` (a new master's end of log). Entries of
    /// this or later epochs, or starting past `start_offset`, are replaced.
    pub fn begin(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset <= start_offset);
        self.entries.push(Epoch {
            epoch,
            start_offset,
        });
        self.save()
    }

    /// Takes over the master's epochs after the log was cut to where it agrees with the
    /// master. Epochs starting past this log's end are kept too: replication is about to
    /// bring their data, and an epoch this log has no data of yet ends at the log's end in
    /// [`consistent_end`], so it never causes a cut.
    pub fn adopt(&mut self, master: &[Epoch]) -> Result<()> {
        if master != self.entries.as_slice() {
            self.entries = master.to_vec();
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        let tmp = self.path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().context(|| format!("write {}", self.path.display()))
    }
}

/// Where a replica's log (`local`, ending at `local_max`) stops agreeing with its master's
/// (`master`, ending at `master_max`): the end of the last epoch both have with the same
/// start, whichever log ends it first. For a log without epochs (from before controller mode)
/// only data past the master's first epoch is cut; `None` means nothing to cut.
pub fn consistent_end(
    local: &[Epoch],
    local_max: i64,
    master: &[Epoch],
    master_max: i64,
) -> Option<i64> {
    let end_of =
        |list: &[Epoch], i: usize, max: i64| list.get(i + 1).map_or(max, |next| next.start_offset);
    if local.is_empty() {
        // A log from before controller mode: what precedes the master's first epoch may be
        // shared (a classic slave's copy), what follows it cannot be.
        return master
            .first()
            .filter(|m| m.start_offset < local_max)
            .map(|m| m.start_offset);
    }
    for (li, l) in local.iter().enumerate().rev() {
        if let Some(mi) = master.iter().position(|m| *m == *l) {
            return Some(end_of(local, li, local_max).min(end_of(master, mi, master_max)));
        }
    }
    // No epoch in common: everything the master has starts after an epoch of ours it never
    // saw, so only what precedes the master's first epoch can be shared.
    Some(master.first().map_or(0, |m| m.start_offset).min(local_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: i32, start_offset: i64) -> Epoch {
        Epoch {
            epoch,
            start_offset,
        }
    }

    #[test]
    fn an_old_master_cuts_what_it_wrote_after_the_new_master_took_over() {
        // Old master wrote epoch 1 up to 1000; the new one took over at 950.
        let local = [e(1, 0)];
        let master = [e(1, 0), e(2, 950)];
        assert_eq!(consistent_end(&local, 1000, &master, 4000), Some(950));
        // A slave behind the boundary keeps all it has.
        assert_eq!(consistent_end(&local, 900, &master, 4000), Some(900));
        // Same epoch on both: nothing diverged.
        assert_eq!(
            consistent_end(&[e(1, 0), e(2, 950)], 3000, &master, 4000),
            Some(3000)
        );
    }

    #[test]
    fn diverged_epochs_fall_back_to_the_last_common_one() {
        // This replica was master of epoch 3 (which never reached the others) from 2000.
        let local = [e(1, 0), e(3, 2000)];
        let master = [e(1, 0), e(4, 1800)];
        assert_eq!(consistent_end(&local, 2500, &master, 5000), Some(1800));
        assert_eq!(consistent_end(&[], 2500, &master, 5000), Some(0));
        assert_eq!(consistent_end(&[], 900, &[e(1, 1000)], 5000), None);
        assert_eq!(consistent_end(&[], 1500, &[e(1, 1000)], 5000), Some(1000));
        // An adopted epoch this log has no data of yet ends at this log's end: no cut.
        let adopted = [e(1, 0), e(2, 950)];
        assert_eq!(
            consistent_end(&adopted, 900, &[e(1, 0), e(2, 950), e(3, 2000)], 3000),
            Some(900)
        );
        assert_eq!(consistent_end(&[e(7, 10)], 2500, &master, 5000), Some(0));
    }

    #[test]
    fn the_file_round_trips_and_begin_replaces_later_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epochFileCheckpoint");
        let mut f = EpochFile::load(&path).unwrap();
        assert!(f.entries().is_empty());
        f.begin(1, 0).unwrap();
        f.begin(2, 500).unwrap();
        f.begin(2, 600).unwrap();
        assert_eq!(
            EpochFile::load(&path).unwrap().entries(),
            &[e(1, 0), e(2, 600)]
        );
        f.adopt(&[e(1, 0), e(3, 550), e(4, 900)]).unwrap();
        assert_eq!(
            EpochFile::load(&path).unwrap().entries(),
            &[e(1, 0), e(3, 550), e(4, 900)]
        );
        fs::write(&path, "2 10\n1 20\n").unwrap();
        assert!(EpochFile::load(&path).is_err());
    }
}
