//! Debian's stomp.py 8.0.0 (`python3-stomp`) against `stampede-broker`: one test per case of
//! `tests/interop/stomp_py_cases.py`, each against a broker of its own on an ephemeral port.
//!
//! Needs the Debian packages from `scripts/install-test-deps`; without them every test fails
//! and says so. Run one case by hand against any broker with
//! `/usr/bin/python3 broker/tests/interop/stomp_py_cases.py --port PORT --case NAME`.

mod common;

use common::Client;

common::interop_cases!(Client::Python;
    queue_competing,
    queue_buffered,
    topic_fanout,
    wildcard_star,
    wildcard_gt,
    selector_equality,
    selector_numeric,
    ack_auto,
    ack_client,
    ack_client_individual,
    nack_requeue,
    nack_dlq,
    nack_dlq_python_false,
    tx_commit,
    tx_abort,
    tx_ack,
    receipts,
    binary_body,
    custom_headers,
    priority,
    expires,
    auth_failure,
    authz_denied,
);
