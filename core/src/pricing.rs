//! A variant's prices: one base price, an optional price per channel (online,
//! pos), an optional compare-at price ("was"), and scheduled changes that take
//! effect at their time. Pure: the shell passes the time in.
//!
//! Rules (API.md is silent; these are Shopify's and Square's):
//! - The price in force for a channel is that channel's own price when it has
//!   one, else the base price.
//! - A scheduled change states a whole price at a time: with a channel, that
//!   channel's price; without one, the base price for every channel (the
//!   channels' own prices are dropped). It also states the compare-at price
//!   from then on (none: no compare-at), so a sale that ends is one change.
//! - Changes apply in time order; two at the same time apply in the order
//!   given. A change whose time has come is settled into the fields by
//!   [`PriceBook::settle`] (the catalog's alarm does it), but the price in
//!   force never depends on whether that has happened yet.
//! - A compare-at price is shown only when it is above the price in force.
//! - Every amount is in the base price's currency, never negative.
use alloc::vec::Vec;

use crate::money::Money;
use crate::stock::Channel;
use crate::time::Timestamp;

/// At most this many scheduled changes per variant.
pub const MAX_SCHEDULED: usize = 20;

/// A price change that takes effect at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledPrice {
    pub at: Timestamp,
    /// `None`: the base price of every channel.
    pub channel: Option<Channel>,
    pub price: Money,
    pub compare_at: Option<Money>,
}

/// A variant's prices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceBook {
    pub price: Money,
    pub online: Option<Money>,
    pub pos: Option<Money>,
    pub compare_at: Option<Money>,
    /// In any order; applied in (time, position) order.
    pub scheduled: Vec<ScheduledPrice>,
}

/// The price a channel charges at a time, and the compare-at price to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InForce {
    pub price: Money,
    /// Only when above `price`.
    pub compare_at: Option<Money>,
}

/// Why a price book is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceError {
    /// An amount is not in the base price's currency.
    MixedCurrency,
    /// A negative amount.
    Negative,
    /// More than [`MAX_SCHEDULED`] scheduled changes.
    TooManyScheduled,
}

impl core::fmt::Display for PriceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PriceError::MixedCurrency => f.write_str("every price of a variant is in one currency"),
            PriceError::Negative => f.write_str("a price is never negative"),
            PriceError::TooManyScheduled => {
                write!(
                    f,
                    "at most {MAX_SCHEDULED} scheduled price changes per variant"
                )
            }
        }
    }
}

/// The fields a change writes, without the schedule.
#[derive(Clone, Copy)]
struct Current {
    price: Money,
    online: Option<Money>,
    pos: Option<Money>,
    compare_at: Option<Money>,
}

impl Current {
    fn apply(&mut self, c: &ScheduledPrice) {
        match c.channel {
            None => {
                self.price = c.price;
                self.online = None;
                self.pos = None;
            }
            Some(Channel::Online) => self.online = Some(c.price),
            Some(Channel::Pos) => self.pos = Some(c.price),
        }
        self.compare_at = c.compare_at;
    }

    fn for_channel(&self, channel: Channel) -> InForce {
        let price = match channel {
            Channel::Online => self.online,
            Channel::Pos => self.pos,
        }
        .unwrap_or(self.price);
        InForce {
            price,
            compare_at: self.compare_at.filter(|c| c.amount > price.amount),
        }
    }
}

impl PriceBook {
    /// A book with one price and nothing else.
    pub fn simple(price: Money) -> PriceBook {
        PriceBook {
            price,
            online: None,
            pos: None,
            compare_at: None,
            scheduled: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), PriceError> {
        if self.scheduled.len() > MAX_SCHEDULED {
            return Err(PriceError::TooManyScheduled);
        }
        let amounts = [Some(self.price), self.online, self.pos, self.compare_at]
            .into_iter()
            .flatten()
            .chain(
                self.scheduled
                    .iter()
                    .flat_map(|s| [Some(s.price), s.compare_at].into_iter().flatten()),
            );
        for m in amounts {
            if m.currency != self.price.currency {
                return Err(PriceError::MixedCurrency);
            }
            if m.is_negative() {
                return Err(PriceError::Negative);
            }
        }
        Ok(())
    }

    /// The indices of the scheduled changes in the order they apply.
    fn order(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.scheduled.len()).collect();
        // Stable: same-time changes keep their given order.
        idx.sort_by_key(|&i| self.scheduled[i].at);
        idx
    }

    fn current(&self) -> Current {
        Current {
            price: self.price,
            online: self.online,
            pos: self.pos,
            compare_at: self.compare_at,
        }
    }

    /// The price `channel` charges at `now`, counting every change due by then.
    pub fn in_force(&self, channel: Channel, now: Timestamp) -> InForce {
        let mut cur = self.current();
        for i in self.order() {
            let c = &self.scheduled[i];
            if c.at > now {
                break;
            }
            cur.apply(c);
        }
        cur.for_channel(channel)
    }

    /// Writes every change due by `now` into the fields and drops it from
    /// the schedule (which is left in time order). True when anything changed.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        let order = self.order();
        let mut cur = self.current();
        let mut left: Vec<ScheduledPrice> = Vec::with_capacity(self.scheduled.len());
        let mut changed = false;
        for i in order {
            let c = &self.scheduled[i];
            if c.at <= now {
                cur.apply(c);
                changed = true;
            } else {
                left.push(c.clone());
            }
        }
        if changed {
            self.price = cur.price;
            self.online = cur.online;
            self.pos = cur.pos;
            self.compare_at = cur.compare_at;
        }
        self.scheduled = left;
        changed
    }

    /// When the next scheduled change takes effect.
    pub fn next_change(&self) -> Option<Timestamp> {
        self.scheduled.iter().map(|s| s.at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(s: &str) -> Money {
        Money::parse(s, "EUR").unwrap()
    }

    fn change(at: i64, channel: Option<Channel>, price: &str, was: Option<&str>) -> ScheduledPrice {
        ScheduledPrice {
            at: Timestamp(at),
            channel,
            price: eur(price),
            compare_at: was.map(eur),
        }
    }

    #[test]
    fn channel_price_wins_over_base() {
        let mut b = PriceBook::simple(eur("20.00"));
        b.online = Some(eur("18.00"));
        assert_eq!(
            b.in_force(Channel::Online, Timestamp(0)).price,
            eur("18.00")
        );
        assert_eq!(b.in_force(Channel::Pos, Timestamp(0)).price, eur("20.00"));
    }

    #[test]
    fn compare_at_shown_only_above_the_price() {
        let mut b = PriceBook::simple(eur("20.00"));
        b.compare_at = Some(eur("25.00"));
        b.pos = Some(eur("26.00"));
        assert_eq!(
            b.in_force(Channel::Online, Timestamp(0)).compare_at,
            Some(eur("25.00"))
        );
        assert_eq!(b.in_force(Channel::Pos, Timestamp(0)).compare_at, None);
    }

    #[test]
    fn a_sale_starts_and_ends_on_time() {
        let mut b = PriceBook::simple(eur("20.00"));
        b.scheduled = alloc::vec![
            // Listed out of order on purpose.
            change(2_000, None, "20.00", None),
            change(1_000, None, "15.00", Some("20.00")),
        ];
        let at = |t| b.in_force(Channel::Online, Timestamp(t));
        assert_eq!(at(999).price, eur("20.00"));
        assert_eq!(at(1_000).price, eur("15.00"));
        assert_eq!(at(1_000).compare_at, Some(eur("20.00")));
        assert_eq!(at(2_000).price, eur("20.00"));
        assert_eq!(at(2_000).compare_at, None);
        assert_eq!(b.next_change(), Some(Timestamp(1_000)));
    }

    #[test]
    fn a_base_change_drops_channel_prices() {
        let mut b = PriceBook::simple(eur("20.00"));
        b.pos = Some(eur("19.00"));
        b.scheduled = alloc::vec![change(10, None, "22.00", None)];
        assert_eq!(b.in_force(Channel::Pos, Timestamp(10)).price, eur("22.00"));
        b.scheduled = alloc::vec![change(10, Some(Channel::Online), "21.00", None)];
        assert_eq!(b.in_force(Channel::Pos, Timestamp(10)).price, eur("19.00"));
        assert_eq!(
            b.in_force(Channel::Online, Timestamp(10)).price,
            eur("21.00")
        );
    }

    #[test]
    fn same_time_changes_apply_in_the_order_given() {
        let mut b = PriceBook::simple(eur("20.00"));
        b.scheduled = alloc::vec![
            change(5, None, "10.00", None),
            change(5, None, "11.00", None)
        ];
        assert_eq!(b.in_force(Channel::Pos, Timestamp(5)).price, eur("11.00"));
        b.settle(Timestamp(5));
        assert_eq!(b.price, eur("11.00"));
    }

    #[test]
    fn validate_refuses_mixed_currency_negatives_and_long_schedules() {
        let mut b = PriceBook::simple(eur("20.00"));
        b.online = Some(Money::parse("18.00", "USD").unwrap());
        assert_eq!(b.validate(), Err(PriceError::MixedCurrency));
        let mut b = PriceBook::simple(eur("20.00"));
        b.compare_at = Some(eur("-1.00"));
        assert_eq!(b.validate(), Err(PriceError::Negative));
        let mut b = PriceBook::simple(eur("20.00"));
        b.scheduled = (0..=MAX_SCHEDULED as i64)
            .map(|t| change(t, None, "1.00", None))
            .collect();
        assert_eq!(b.validate(), Err(PriceError::TooManyScheduled));
        b.scheduled.pop();
        assert_eq!(b.validate(), Ok(()));
    }
}

/// Property tests (proptest does not build for wasm32).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_book() -> impl Strategy<Value = (PriceBook, i64)> {
        let amount = (0u32..5_000).prop_map(|c| {
            Money::new(
                rust_decimal::Decimal::new(c as i64, 2),
                "EUR".parse().unwrap(),
            )
            .unwrap()
        });
        let chan = prop_oneof![
            Just(None),
            Just(Some(Channel::Online)),
            Just(Some(Channel::Pos))
        ];
        let sched = (
            0i64..100,
            chan,
            amount.clone(),
            proptest::option::of(amount.clone()),
        )
            .prop_map(|(at, channel, price, compare_at)| ScheduledPrice {
                at: Timestamp(at),
                channel,
                price,
                compare_at,
            });
        (
            amount.clone(),
            proptest::option::of(amount.clone()),
            proptest::option::of(amount.clone()),
            proptest::option::of(amount),
            proptest::collection::vec(sched, 0..MAX_SCHEDULED),
            0i64..120,
        )
            .prop_map(|(price, online, pos, compare_at, scheduled, now)| {
                (
                    PriceBook {
                        price,
                        online,
                        pos,
                        compare_at,
                        scheduled,
                    },
                    now,
                )
            })
    }

    proptest! {
        /// Settling (the alarm) never changes the price in force, at any
        /// time after it, for any channel; and settling twice is settling once.
        #[test]
        fn settling_never_changes_the_price_in_force((book, now) in arb_book(), later in 0i64..200) {
            let mut settled = book.clone();
            settled.settle(Timestamp(now));
            let t = Timestamp(now.max(later));
            for ch in [Channel::Online, Channel::Pos] {
                prop_assert_eq!(book.in_force(ch, t), settled.in_force(ch, t));
            }
            prop_assert!(settled.scheduled.iter().all(|s| s.at > Timestamp(now)));
            let again = {
                let mut s = settled.clone();
                s.settle(Timestamp(now));
                s
            };
            prop_assert_eq!(again, settled);
        }
    }
}
