//! The store writer: a task that appends the core's records to the message store and
//! syncs them per `[store] sync`, then reports the ticket through which everything is
//! durable (or, with `interval_ms`, written) back to the core task.
//!
//! The store's calls block (a write, an fsync); they run on this task, never on the core
//! task, so the broker goes on routing while a sync runs, and what arrives meanwhile
//! shares the next sync (group commit comes for free under load). The channel from the
//! core task holds at most [`STORE_BATCHES_MAX`] batches: when the disk falls behind, the
//! core task waits to hand over a batch, and so stops taking new frames.
//!
//! A full disk (`[store] disk_full = "wait"`, the default) is waited out: the record that
//! did not fit (the store took back what it wrote of it) is tried again every
//! `disk_full_retry_interval_ms` until it fits, and nothing after it is reported synced
//! before. With `"stop"`, or on any other error, the store has failed and the broker stops.
//!
//! On a shared store the writer also checks every `lock_keepalive_period_ms` that this
//! broker still holds the directory's lock ([`Store::keep_alive`]); a failed check is a
//! failed store: the broker stops rather than serve beside the broker that holds it now.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::store::{
    DiskFullPolicy, MasterSlave, Record, Store, StoreConfig, StoreError, SyncPolicy,
};

/// Batches of records (one per pass of the core task) waiting for the store writer.
pub(super) const STORE_BATCHES_MAX: usize = 64;

/// Records of one pass of the core task, with their tickets.
pub(super) type Batch = Vec<(u64, Record)>;

/// What the writer reports.
#[derive(Clone, Debug, Default)]
pub(super) struct Progress {
    /// Every record through this ticket is synced (written, with `interval_ms`).
    pub(super) synced: u64,
    /// Set when the store failed: the broker must stop.
    pub(super) failed: Option<String>,
}

/// Runs until the core task drops its sender, then syncs what it wrote and ends.
pub(super) async fn run(
    mut store: Store,
    config: StoreConfig,
    mut batches: mpsc::Receiver<Batch>,
    progress: watch::Sender<Progress>,
) {
    if let Err(e) = serve(&mut store, &config, &mut batches, &progress).await {
        tracing::error!("the message store failed: {e}");
        progress.send_modify(|p| p.failed = Some(e.to_string()));
        return;
    }
    if let Err(e) = store.sync() {
        tracing::error!("the message store failed on its last sync: {e}");
    }
}

async fn serve(
    store: &mut Store,
    config: &StoreConfig,
    batches: &mut mpsc::Receiver<Batch>,
    progress: &watch::Sender<Progress>,
) -> Result<(), StoreError> {
    let interval = Duration::from_millis(config.interval_ms.max(1));
    let window = Duration::from_millis(config.group_window_ms.max(1));
    let mut next_interval_sync = tokio::time::Instant::now() + interval;
    // The lock keep-alive: only a shared store's lock, or a replicated store's
    // leadership, can be lost.
    let keepalive = match config.master_slave {
        MasterSlave::SharedStore if config.lock_keepalive_period_ms > 0 => {
            Some(Duration::from_millis(config.lock_keepalive_period_ms))
        }
        MasterSlave::Replicated => Some(Duration::from_millis(
            config.replication.heartbeat_interval_ms.max(1),
        )),
        _ => None,
    };
    let mut next_keepalive = keepalive.map(|k| tokio::time::Instant::now() + k);
    loop {
        let mut last = None;
        let mut records = 0usize;
        // A busy writer checks its lock between batches too.
        if let (Some(k), Some(due)) = (keepalive, next_keepalive)
            && tokio::time::Instant::now() >= due
        {
            store.keep_alive()?;
            next_keepalive = Some(tokio::time::Instant::now() + k);
        }
        let interval_due = async {
            if config.sync == SyncPolicy::IntervalMs {
                tokio::time::sleep_until(next_interval_sync).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let keepalive_due = async {
            match next_keepalive {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending::<()>().await,
            }
        };
        // Wait for work (or, with `interval_ms`, for the next periodic sync; or for the
        // next lock check).
        let first = tokio::select! {
            biased;
            b = batches.recv() => b,
            () = interval_due => {
                sync(store).await?;
                next_interval_sync = tokio::time::Instant::now() + interval;
                continue;
            }
            () = keepalive_due => continue,
        };
        let Some(first) = first else {
            return Ok(());
        };
        write(store, config, batches, first, &mut last, &mut records).await?;
        if config.sync == SyncPolicy::Group {
            // Group commit: wait a bounded window for more, unless the batch is full.
            let deadline = tokio::time::Instant::now() + window;
            while records < config.group_batch_max {
                tokio::select! {
                    biased;
                    b = batches.recv() => match b {
                        Some(b) => write(store, config, batches, b, &mut last, &mut records).await?,
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        // Whatever is already waiting shares this sync.
        while let Ok(b) = batches.try_recv() {
            write(store, config, batches, b, &mut last, &mut records).await?;
        }
        if config.sync != SyncPolicy::IntervalMs {
            sync(store).await?;
        } else if let Some(replicated) = store.replicated() {
            // Receipts after a majority of replicas has written the records (ActiveMQ's
            // replicated `quorum_mem`), synced or not.
            replicated
                .await
                .map_err(|e| StoreError::LockLost { why: e.to_string() })?;
        }
        if let Some(ticket) = last {
            progress.send_modify(|p| p.synced = p.synced.max(ticket));
        }
    }
}

/// Syncs, then waits out what the disk says the sync took beyond the call (a simulated
/// slow disk), so that nothing is reported synced before the disk would have finished;
/// on a replicated store, then waits until a majority of the replicas has it too.
async fn sync(store: &mut Store) -> Result<(), StoreError> {
    store.sync()?;
    let delay = store.take_sync_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(durable) = store.durable() {
        durable
            .await
            .map_err(|e| StoreError::LockLost { why: e.to_string() })?;
    }
    Ok(())
}

/// Appends a batch; waits out a full disk per `config.disk_full` (`batches` tells
/// whether the broker is shutting down meanwhile: then it gives up).
async fn write(
    store: &mut Store,
    config: &StoreConfig,
    batches: &mpsc::Receiver<Batch>,
    batch: Batch,
    last: &mut Option<u64>,
    records: &mut usize,
) -> Result<(), StoreError> {
    let retry = Duration::from_millis(config.disk_full_retry_interval_ms.max(1));
    for (ticket, record) in batch {
        let mut waited = false;
        loop {
            match store.append(&record) {
                Ok(()) => break,
                Err(e)
                    if e.is_no_space()
                        && config.disk_full == DiskFullPolicy::Wait
                        && !batches.is_closed() =>
                {
                    if !waited {
                        tracing::warn!(
                            "the store's disk is full ({e}): waiting for space, trying again every {} ms; persistent SENDs get their receipts once written",
                            retry.as_millis()
                        );
                        waited = true;
                    }
                    tokio::time::sleep(retry).await;
                }
                Err(e) => return Err(e),
            }
        }
        if waited {
            tracing::info!("the store's disk has room again: writing on");
        }
        *last = Some(ticket);
        *records += 1;
    }
    Ok(())
}
