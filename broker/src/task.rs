//! Where the broker's shells (server, connectors, client driver) and the simulator's
//! workloads spawn their tasks.
//!
//! In production a task goes to tokio's scheduler ([`tokio::spawn`]). A thread running a
//! simulation marks itself with [`spawn_on_local_set`], and its tasks then go to the
//! `LocalSet` of the turmoil host that spawns them ([`tokio::task::spawn_local`]), for
//! determinism: a runtime keeps the tasks spawned on it grouped by tokio's task number,
//! which one counter numbers for the whole process, and a crash (dropping the host's
//! runtime) drops them group by group. Which of a crashed broker's connections closed
//! first, and so every random draw of the network after it, would depend on how many
//! tasks other threads (other tests, a sweep's other cells) had spawned meanwhile. A
//! `LocalSet` drops its tasks in the order they were spawned.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;

use tokio::task::{AbortHandle, JoinHandle, JoinSet};

thread_local! {
    /// Whether this thread runs a simulation (every task inside a turmoil host).
    static ON_LOCAL_SET: Cell<bool> = const { Cell::new(false) };
}

/// While alive, tasks spawned on this thread go to the current `LocalSet`; dropping it
/// restores what was there before. Only for a thread whose every task runs inside a
/// `LocalSet` (turmoil's hosts): spawning elsewhere would panic.
#[must_use = "spawning returns to tokio's scheduler when this is dropped"]
pub struct LocalSpawning {
    previous: bool,
    /// Tied to the thread whose flag it set.
    _thread: PhantomData<*const ()>,
}

/// Marks this thread as a simulation's: see the module's documentation.
pub fn spawn_on_local_set() -> LocalSpawning {
    LocalSpawning {
        previous: ON_LOCAL_SET.replace(true),
        _thread: PhantomData,
    }
}

impl Drop for LocalSpawning {
    fn drop(&mut self) {
        ON_LOCAL_SET.set(self.previous);
    }
}

/// Spawns `future` as a task: tokio's [`tokio::spawn`], or the current `LocalSet`'s on a
/// simulation's thread.
#[allow(clippy::disallowed_methods)] // The one place tasks are spawned.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if ON_LOCAL_SET.get() {
        tokio::task::spawn_local(future)
    } else {
        tokio::spawn(future)
    }
}

/// Spawns `future` into `set`, as [`spawn`] chooses where.
#[allow(clippy::disallowed_methods)] // The one place tasks are spawned into a JoinSet.
pub fn spawn_into<T, F>(set: &mut JoinSet<T>, future: F) -> AbortHandle
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    if ON_LOCAL_SET.get() {
        set.spawn_local(future)
    } else {
        set.spawn(future)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_marked_thread_spawns_on_its_local_set_and_unmarks_on_drop() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // A `!Send` value inside the task proves that it runs on the `LocalSet` (and,
        // being spawned through `spawn`, would not compile if it were held across an
        // await): here the test checks the flag's scope instead.
        let local = tokio::task::LocalSet::new();
        {
            let _marked = spawn_on_local_set();
            assert!(ON_LOCAL_SET.get());
            let got = local.block_on(&rt, async { spawn(async { 7 }).await.unwrap() });
            assert_eq!(got, 7);
            {
                let _nested = spawn_on_local_set();
            }
            assert!(ON_LOCAL_SET.get(), "a nested guard restores what it found");
        }
        assert!(!ON_LOCAL_SET.get());
        // Unmarked, outside any LocalSet: tokio's scheduler (spawn_local would panic).
        let got = rt.block_on(async { spawn(async { 8 }).await.unwrap() });
        assert_eq!(got, 8);
    }

    /// The order in which a runtime and its `LocalSet`, dropped as turmoil drops a
    /// crashed host's, drop eight tasks spawned through [`spawn`] on a marked thread; with
    /// `interleave`, another thread's runtime spawns a task between each two.
    fn drop_order(interleave: bool) -> Vec<u32> {
        struct Noted(u32, Arc<Mutex<Vec<u32>>>);
        impl Drop for Noted {
            fn drop(&mut self) {
                self.1.lock().unwrap().push(self.0);
            }
        }
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let _marked = spawn_on_local_set();
        local.block_on(&rt, async {
            for i in 0..8 {
                let noted = Noted(i, dropped.clone());
                spawn(async move {
                    let _held = noted;
                    std::future::pending::<()>().await;
                });
                if interleave {
                    // Another runtime's task takes the next task number.
                    #[allow(clippy::disallowed_methods)]
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            let other = tokio::runtime::Builder::new_current_thread()
                                .build()
                                .unwrap();
                            other.block_on(async { tokio::spawn(async {}).await.unwrap() });
                        });
                    });
                }
            }
            tokio::task::yield_now().await;
        });
        drop(rt);
        drop(local);
        dropped.lock().unwrap().clone()
    }

    #[test]
    fn a_crashed_hosts_tasks_drop_in_an_order_other_threads_do_not_change() {
        let alone = drop_order(false);
        assert_eq!(alone.len(), 8);
        assert_eq!(alone, drop_order(true));
    }
}
