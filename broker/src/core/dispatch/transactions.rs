//! BEGIN, COMMIT and ABORT: operations buffered per transaction and applied at COMMIT.

use bytestring::ByteString;

use crate::core::Broker;
use crate::core::ids::ConnId;
use crate::core::request::TxRequest;
use crate::core::session::{FrameError, FrameResult, fatal};
use crate::core::transaction::TxOp;
use crate::proto::Frame;

impl Broker {
    pub(in crate::core) fn on_begin(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let tx = TxRequest::parse(frame)?.transaction;
        let max = self.config.limits.transactions_per_connection_max;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Ok(());
        };
        if conn.txs.contains_key(&tx) {
            return fatal(format!("transaction '{tx}' is already open"));
        }
        if conn.txs.len() >= max {
            return fatal(format!(
                "too many open transactions (limits.transactions_per_connection_max = {max})"
            ));
        }
        conn.txs.insert(tx, Vec::new());
        Ok(())
    }

    pub(super) fn buffer_tx(&mut self, conn_id: ConnId, tx: &ByteString, op: TxOp) -> FrameResult {
        let max = self.config.limits.transaction_frames_max;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Ok(());
        };
        let Some(ops) = conn.txs.get_mut(tx) else {
            return fatal(format!("transaction '{tx}' is not open"));
        };
        if ops.len() >= max {
            return fatal(format!(
                "transaction '{tx}' is too large (limits.transaction_frames_max = {max})"
            ));
        }
        ops.push(op);
        Ok(())
    }

    pub(in crate::core) fn on_commit(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let tx = TxRequest::parse(frame)?.transaction;
        let Some(ops) = self.conns.get_mut(&conn_id).and_then(|c| c.txs.remove(&tx)) else {
            return fatal(format!("transaction '{tx}' is not open"));
        };
        let mut refused = Vec::new();
        // Everything the commit stores is one record: all of it survives a crash, or none.
        self.begin_persist_batch();
        for op in ops {
            match op {
                TxOp::Send(key, message) => {
                    if let Err(FrameError::Refused(m) | FrameError::Fatal(m)) =
                        self.route(key, message)
                    {
                        refused.push(m);
                    }
                }
                TxOp::Ack { sub, tag, kind } => self.apply_ack(sub, tag, kind),
            }
        }
        self.end_persist_batch();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Refused(format!(
                "transaction '{tx}' committed, but {} message(s) were refused: {}",
                refused.len(),
                refused.join("; ")
            )))
        }
    }

    pub(in crate::core) fn on_abort(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let tx = TxRequest::parse(frame)?.transaction;
        match self.conns.get_mut(&conn_id).and_then(|c| c.txs.remove(&tx)) {
            Some(_) => Ok(()),
            None => fatal(format!("transaction '{tx}' is not open")),
        }
    }
}
