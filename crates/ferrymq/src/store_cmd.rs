//! `ferrymq store …`: offline tools over a store directory (ours or Apache RocketMQ's). The logic
//! lives in `ferrymq_store::tools`; this module only parses arguments and prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use ferrymq_store::tools::{dump, verify, DumpOptions};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check every commit-log record (CRC, framing) and that consume-queue and index entries agree
    /// with the log. Prints a summary; exits with status 1 if anything is damaged.
    Verify {
        /// storePathRootDir (contains commitlog/, consumequeue/, index/).
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print commit-log records, one per line (or one JSON object per line).
    Dump {
        /// storePathRootDir.
        dir: PathBuf,
        /// Only records of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Start at this commit-log offset (a record or file start).
        #[arg(long)]
        offset: Option<i64>,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Verify { dir, json } => {
            let report = verify(&dir)?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                writeln!(out, "store:           {}", report.root.display())?;
                writeln!(
                    out,
                    "commit log:      {} files of {} bytes, offsets {}..{}, {} records ({} bytes)",
                    report.commit_log_files,
                    report.commit_log_file_size,
                    report.commit_log_min_offset,
                    report.commit_log_max_offset,
                    report.records,
                    report.record_bytes
                )?;
                writeln!(
                    out,
                    "consume queues:  {} queues, {} entries",
                    report.consume_queues, report.consume_queue_entries
                )?;
                writeln!(
                    out,
                    "index:           {} files, {} entries",
                    report.index_files, report.index_entries
                )?;
                for p in &report.problems {
                    writeln!(out, "DAMAGE: {p}")?;
                }
                if report.more_problems > 0 {
                    writeln!(out, "DAMAGE: … and {} more", report.more_problems)?;
                }
                writeln!(out, "{}", if report.is_ok() { "OK" } else { "DAMAGED" })?;
            }
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        StoreCommand::Dump {
            dir,
            topic,
            offset,
            count,
            json,
        } => {
            let opts = DumpOptions {
                topic,
                offset,
                count,
            };
            let mut out = std::io::stdout().lock();
            let mut write_err = None;
            let (_, damage) = dump(&dir, &opts, |r| {
                if write_err.is_some() {
                    return;
                }
                let line = if json {
                    serde_json::to_string(r).unwrap_or_default()
                } else {
                    r.to_line()
                };
                if let Err(e) = writeln!(out, "{line}") {
                    write_err = Some(e);
                }
            })?;
            if let Some(e) = write_err {
                // A closed pipe (`| head`) is a normal way to stop.
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
            if let Some(d) = damage {
                eprintln!("stopped: {d}");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
