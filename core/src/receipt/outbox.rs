//! The email outbox of one receipt, sans-IO like the coordinators: the
//! `ReceiptBook` object stores it as one JSON row, feeds it requests
//! ([`Outbox::handle_email`]) and the provider's answers
//! ([`Outbox::handle_result`]), sends what [`Outbox::poll_transmit`] gives
//! (after storing the row), and points its alarm at [`Outbox::poll_timeout`].
//!
//! Once per request key: a key is one message with one id, and every attempt
//! carries that id as the provider's Idempotency-Key, so an attempt whose
//! answer was lost (a crash, a timeout) is retried without a second email.
//! An attempt with no answer counts as failed once its backoff passes; a
//! retryable failure (network, 429, 5xx) waits 1 s doubling to 5 min; after
//! [`MAX_ATTEMPTS`] attempts, or a final refusal, the message is `failed`.
use alloc::string::String;
use alloc::vec::Vec;

use super::ReceiptKind;
use crate::time::Timestamp;

/// Most messages one receipt's outbox keeps (one more is refused).
pub const MAX_MESSAGES: usize = 20;
/// Most attempts to deliver one message.
pub const MAX_ATTEMPTS: u32 = 8;
/// The delay after the first failed attempt; each next one doubles.
pub const FIRST_BACKOFF_MS: i64 = 1_000;
/// The longest delay between two attempts.
pub const MAX_BACKOFF_MS: i64 = 300_000;
/// Longest error text kept.
pub const MAX_ERROR_CHARS: usize = 300;

/// The delay before the attempt after `attempts` failed ones.
pub fn backoff_ms(attempts: u32) -> i64 {
    let shift = attempts.clamp(1, 20) - 1;
    (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Sent,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }
}

/// One message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// The message id (the provider's Idempotency-Key).
    pub id: String,
    /// The request's key hash and fingerprint.
    pub key: String,
    pub fp: String,
    pub to: String,
    pub kind: ReceiptKind,
    pub status: Status,
    /// Attempts started.
    pub attempts: u32,
    /// When the next attempt is due (queued only).
    pub next_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub created_at: Timestamp,
}

/// An attempt to send: the shell posts it to the provider and feeds the
/// answer back with `attempt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub id: String,
    pub to: String,
    pub kind: ReceiptKind,
    pub attempt: u32,
}

/// What the provider answered one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendResult {
    Accepted {
        provider_id: Option<String>,
    },
    /// Network failure, 429 or 5xx.
    Retry {
        error: String,
    },
    /// Any other refusal: final.
    Refused {
        error: String,
    },
}

/// Why an email request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxError {
    /// The key was used with another request.
    KeyReused,
    /// [`MAX_MESSAGES`] already.
    Full,
}

/// The outbox: messages in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outbox {
    messages: Vec<Message>,
}

impl Outbox {
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// A request to email the receipt of `kind` to `to`, under request key
    /// `key` with fingerprint `fp`; `id` names the message if the key is
    /// new. Answers the key's message and whether it existed (a replay).
    pub fn handle_email(
        &mut self,
        now: Timestamp,
        key: &str,
        fp: &str,
        to: &str,
        kind: ReceiptKind,
        id: &str,
    ) -> Result<(&Message, bool), OutboxError> {
        if let Some(i) = self.messages.iter().position(|m| m.key == key) {
            if self.messages[i].fp != fp {
                return Err(OutboxError::KeyReused);
            }
            return Ok((&self.messages[i], true));
        }
        if self.messages.len() >= MAX_MESSAGES {
            return Err(OutboxError::Full);
        }
        self.messages.push(Message {
            id: id.into(),
            key: key.into(),
            fp: fp.into(),
            to: to.into(),
            kind,
            status: Status::Queued,
            attempts: 0,
            next_at: Some(now),
            last_error: None,
            provider_id: None,
            created_at: now,
        });
        let last = self.messages.len() - 1;
        Ok((&self.messages[last], false))
    }

    /// The next due attempt, if any: started now (counted, and due again
    /// after its backoff should no answer come). A message out of attempts
    /// becomes `failed` instead.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        for m in &mut self.messages {
            if m.status != Status::Queued || m.next_at.is_some_and(|t| t > now) {
                continue;
            }
            if m.attempts >= MAX_ATTEMPTS {
                m.status = Status::Failed;
                m.next_at = None;
                continue;
            }
            m.attempts += 1;
            m.next_at = Some(now.plus_ms(backoff_ms(m.attempts)));
            return Some(Transmit {
                id: m.id.clone(),
                to: m.to.clone(),
                kind: m.kind,
                attempt: m.attempts,
            });
        }
        None
    }

    /// The provider's answer to attempt `attempt` of message `id`. An answer
    /// to an older attempt, or to a message no longer queued, is ignored,
    /// except an acceptance (the email went out: it is sent).
    pub fn handle_result(&mut self, now: Timestamp, id: &str, attempt: u32, r: SendResult) {
        let Some(m) = self.messages.iter_mut().find(|m| m.id == id) else {
            return;
        };
        match r {
            SendResult::Accepted { provider_id } => {
                m.status = Status::Sent;
                m.next_at = None;
                m.last_error = None;
                m.provider_id = provider_id.or(m.provider_id.take());
            }
            _ if m.status != Status::Queued || attempt != m.attempts => {}
            SendResult::Retry { error } => {
                m.last_error = Some(error.chars().take(MAX_ERROR_CHARS).collect());
                m.next_at = Some(now.plus_ms(backoff_ms(m.attempts)));
                if m.attempts >= MAX_ATTEMPTS {
                    m.status = Status::Failed;
                    m.next_at = None;
                }
            }
            SendResult::Refused { error } => {
                m.last_error = Some(error.chars().take(MAX_ERROR_CHARS).collect());
                m.status = Status::Failed;
                m.next_at = None;
            }
        }
    }

    /// When the alarm should next run: the earliest due queued message.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.messages
            .iter()
            .filter(|m| m.status == Status::Queued)
            .filter_map(|m| m.next_at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(7), 64_000);
        assert_eq!(backoff_ms(40), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(0), 1_000);
    }

    #[test]
    fn one_message_per_key_retried_until_accepted() {
        let mut o = Outbox::default();
        let t = Timestamp(1_000);
        let (m, replay) = o
            .handle_email(t, "k", "f", "a@b.c", ReceiptKind::Sale, "m1")
            .unwrap();
        assert_eq!((m.id.as_str(), replay), ("m1", false));
        assert_eq!(
            o.handle_email(t, "k", "other", "a@b.c", ReceiptKind::Sale, "m2"),
            Err(OutboxError::KeyReused)
        );
        assert!(
            o.handle_email(t, "k", "f", "a@b.c", ReceiptKind::Sale, "m2")
                .unwrap()
                .1
        );
        let x = o.poll_transmit(t).unwrap();
        assert_eq!((x.id.as_str(), x.attempt), ("m1", 1));
        assert_eq!(o.poll_transmit(t), None, "in flight until its backoff");
        o.handle_result(
            t,
            "m1",
            1,
            SendResult::Retry {
                error: "500".into(),
            },
        );
        assert_eq!(o.poll_timeout(), Some(Timestamp(2_000)));
        assert_eq!(o.poll_transmit(Timestamp(1_999)), None);
        let x = o.poll_transmit(Timestamp(2_000)).unwrap();
        assert_eq!(x.attempt, 2);
        // A late answer to attempt 1 changes nothing; attempt 2's is taken.
        o.handle_result(t, "m1", 1, SendResult::Refused { error: "x".into() });
        assert_eq!(o.messages()[0].status, Status::Queued);
        o.handle_result(
            t,
            "m1",
            2,
            SendResult::Accepted {
                provider_id: Some("p".into()),
            },
        );
        assert_eq!(o.messages()[0].status, Status::Sent);
        assert_eq!(o.poll_timeout(), None);
    }

    #[test]
    fn out_of_attempts_or_refused_is_failed_and_the_outbox_is_bounded() {
        let mut o = Outbox::default();
        let mut now = Timestamp(0);
        o.handle_email(now, "k", "f", "a@b.c", ReceiptKind::Sale, "m")
            .unwrap();
        for _ in 0..MAX_ATTEMPTS {
            let x = o.poll_transmit(now).unwrap();
            o.handle_result(
                now,
                "m",
                x.attempt,
                SendResult::Retry {
                    error: "429".into(),
                },
            );
            now = o.poll_timeout().unwrap_or(now);
        }
        assert_eq!(o.messages()[0].status, Status::Failed);
        assert_eq!(o.poll_transmit(now.plus_ms(MAX_BACKOFF_MS)), None);
        o.handle_email(now, "k2", "f", "a@b.c", ReceiptKind::Sale, "m2")
            .unwrap();
        let x = o.poll_transmit(now).unwrap();
        o.handle_result(
            now,
            "m2",
            x.attempt,
            SendResult::Refused {
                error: "422".into(),
            },
        );
        assert_eq!(o.messages()[1].status, Status::Failed);
        for i in 2..MAX_MESSAGES {
            o.handle_email(
                now,
                &alloc::format!("k{i}x"),
                "f",
                "a@b.c",
                ReceiptKind::Sale,
                "m",
            )
            .unwrap();
        }
        assert_eq!(
            o.handle_email(now, "one-more", "f", "a@b.c", ReceiptKind::Sale, "m"),
            Err(OutboxError::Full)
        );
    }
}
