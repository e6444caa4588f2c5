//! Commands from the handles: queued operations, subscriptions.

use tokio::time::Instant;

use super::super::ClientError;
use super::super::ops::*;
use super::*;

impl Driver {
    pub(super) fn on_command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Op(q) => {
                if q.deadline.is_some_and(|d| d <= now) {
                    q.op.fail(ClientError::Timeout);
                    return;
                }
                self.pending.push_back(q);
                self.pump(now);
            }
            Cmd::Subscribe { spec, reply } => match self.session.subscribe(spec) {
                Ok((id, frame)) => {
                    if frame.is_some() && matches!(self.phase, Phase::Up { .. }) {
                        let connection = self.session.connection();
                        self.pending.push_back(Queued {
                            op: Op::Subscribe { id, connection },
                            deadline: None,
                        });
                        self.pump(now);
                    }
                    let _ = reply.send(Ok(id));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Cmd::Unsubscribe { id, reply } => match self.session.unsubscribe(id) {
                Ok(frame) => {
                    let queued_subscribe = self
                        .pending
                        .iter()
                        .position(|q| matches!(q.op, Op::Subscribe { id: s, .. } if s == id));
                    match (queued_subscribe, frame) {
                        // The broker never saw the SUBSCRIBE: drop both.
                        (Some(pos), _) => {
                            let _ = self.pending.remove(pos);
                        }
                        (None, Some(frame)) if matches!(self.phase, Phase::Up { .. }) => {
                            let connection = self.session.connection();
                            self.pending.push_back(Queued {
                                op: Op::Unsubscribe { frame, connection },
                                deadline: None,
                            });
                            self.pump(now);
                        }
                        (None, _) => {}
                    }
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
        }
    }
}
