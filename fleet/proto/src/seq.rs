//! A packet's place in its bike's sequence: the boot counter, then a counter since that boot.

use std::fmt;

/// `(boot, counter)` packed into the envelope's `seq` as `boot << 32 | counter`, so that it
/// increases across reboots as long as the bike counts its boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq {
    pub boot: u32,
    pub counter: u32,
}

impl Seq {
    pub const fn new(boot: u32, counter: u32) -> Self {
        Self { boot, counter }
    }

    /// The next packet's, in the same boot (a bike that sends 2³² packets in one boot starts
    /// a new one).
    #[must_use]
    pub const fn next(self) -> Self {
        match self.counter.checked_add(1) {
            Some(counter) => Self { boot: self.boot, counter },
            None => Self { boot: self.boot.wrapping_add(1), counter: 0 },
        }
    }

    /// The first packet after a reboot.
    #[must_use]
    pub const fn rebooted(self) -> Self {
        Self { boot: self.boot.wrapping_add(1), counter: 0 }
    }
}

impl From<u64> for Seq {
    fn from(packed: u64) -> Self {
        #[allow(clippy::cast_possible_truncation)] // the halves, on purpose
        Self { boot: (packed >> 32) as u32, counter: packed as u32 }
    }
}

impl From<Seq> for u64 {
    fn from(seq: Seq) -> Self {
        (u64::from(seq.boot) << 32) | u64::from(seq.counter)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.boot, self.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_both_halves() {
        for seq in [Seq::new(0, 0), Seq::new(1, 2), Seq::new(u32::MAX, u32::MAX), Seq::new(7, u32::MAX)] {
            assert_eq!(Seq::from(u64::from(seq)), seq);
        }
    }

    #[test]
    fn the_sequence_increases_across_reboots() {
        let late_in_boot_one = Seq::new(1, 1_000_000);
        let after_reboot = late_in_boot_one.rebooted();
        assert_eq!(after_reboot, Seq::new(2, 0));
        assert!(u64::from(after_reboot) > u64::from(late_in_boot_one));
        assert!(u64::from(after_reboot.next()) > u64::from(after_reboot));
        assert_eq!(Seq::new(3, u32::MAX).next(), Seq::new(4, 0), "a full counter starts a new boot");
        assert_eq!(Seq::new(2, 5).to_string(), "2.5");
    }
}
