//! Messages to a `ReceiptBook` object (one per receipt number: a sale, order
//! or return id): the issued receipts (frozen: the first issue of a kind
//! wins) and the email outbox.
use omnistock_core::receipt::{Receipt, ReceiptKind};
use serde::{Deserialize, Serialize};

use super::Idem;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ReceiptRequest {
    /// What is known under this number.
    Get,
    /// Issue `receipt` unless one of its kind was issued: the answer is the
    /// receipt as issued (the first), never a changed one.
    Issue { receipt: Box<Receipt> },
    /// Queue the issued receipt of `kind` for email to `to`, once per key.
    Email {
        kind: ReceiptKind,
        to: String,
        /// A fresh UUIDv7 for the message (kept only when the key is new).
        id: String,
        idem: Idem,
    },
}

/// The answer to [`ReceiptRequest::Get`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Known {
    /// Issued receipts, in the order they were issued.
    pub receipts: Vec<Receipt>,
}

/// The answer to [`ReceiptRequest::Email`] (the HTTP body of the 202).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmailAnswer {
    pub id: String,
    pub receipt: String,
    pub kind: ReceiptKind,
    pub to: String,
    /// Always `queued`: the outbox sends it (the first attempt before this
    /// answer, retries by the alarm with backoff); the same on a replay.
    pub status: String,
    #[serde(default)]
    pub replayed: bool,
}
