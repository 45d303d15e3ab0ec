//! Drop counters by reason: plain integers in the cores, named when exported.
//! Each core declares its own reason enum with [`drop_reasons!`], which
//! implements [`Reason`] for it and maps [`crate::Error`] and
//! [`GuardDrop`](crate::handshake_guard::GuardDrop) onto it.
use std::marker::PhantomData;

/// The most reasons one enum may have.
pub const MAX_REASONS: usize = 32;

/// A drop reason: a field-less enum whose discriminants are 0..N.
pub trait Reason: Copy + 'static {
    /// Every reason, in discriminant order.
    const ALL: &'static [Self];
    /// How many reasons (`ALL.len()`), at most [`MAX_REASONS`].
    const COUNT: usize;
    /// The discriminant, below [`MAX_REASONS`].
    fn index(self) -> usize;
    /// The stable snake_case name used in status output and metric labels.
    fn name(self) -> &'static str;
}

/// One counter per reason.
#[derive(Debug, Clone)]
pub struct DropCounters<R: Reason> {
    counts: [u64; MAX_REASONS],
    reason: PhantomData<R>,
}

impl<R: Reason> Default for DropCounters<R> {
    fn default() -> Self {
        DropCounters {
            counts: [0; MAX_REASONS],
            reason: PhantomData,
        }
    }
}

impl<R: Reason> DropCounters<R> {
    /// Count one drop.
    pub fn add(&mut self, r: R) {
        // HOT PATH (on bad input)
        self.counts[r.index()] += 1;
    }

    /// Count `n` drops at once.
    pub fn add_n(&mut self, r: R, n: u64) {
        self.counts[r.index()] += n;
    }

    /// The count for one reason.
    pub fn get(&self, r: R) -> u64 {
        self.counts[r.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every reason with its count, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (R, u64)> + '_ {
        R::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

impl<R: Reason> std::ops::AddAssign<&DropCounters<R>> for DropCounters<R> {
    /// Sum two sets of counters (several cores in one process).
    fn add_assign(&mut self, other: &DropCounters<R>) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }
}

/// Read back from status JSON (the `status` command renders what the
/// daemon sent): counts by name; names this build does not know are skipped.
impl<'de, R: Reason> serde::Deserialize<'de> for DropCounters<R> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let by_name: std::collections::BTreeMap<String, u64> = serde::Deserialize::deserialize(d)?;
        let mut counters = DropCounters::default();
        for &r in R::ALL {
            counters.add_n(r, by_name.get(r.name()).copied().unwrap_or(0));
        }
        Ok(counters)
    }
}

impl<R: Reason> serde::Serialize for DropCounters<R> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(R::ALL.len()))?;
        for (r, c) in self.iter() {
            m.serialize_entry(r.name(), &c)?;
        }
        m.end()
    }
}

/// Declares a drop reason enum: each variant with its stable snake_case name
/// (the `reason` label of metrics and the key in `status --json`), in
/// discriminant order. It implements [`Reason`] (`ALL`, `COUNT`, `index`,
/// `name`) and the one mapping of [`crate::Error`] and
/// [`GuardDrop`](crate::handshake_guard::GuardDrop) to reasons, so every enum
/// must declare the reasons those map to: `Truncated`, `BadVersion`,
/// `UnknownType`, `BadFlags`, `BadTag`, `Replay`, `Expired`,
/// `HandshakeFailed`, `BadMac1`, `BadMac2` and `HandshakeRateLimited`.
///
/// ```
/// overlay_proto::drop_reasons! {
///     /// Why a toy core dropped something.
///     pub enum Toy {
///         /// Shorter than its header.
///         Truncated = "truncated",
///         BadVersion = "bad_version",
///         UnknownType = "unknown_type",
///         BadFlags = "bad_flags",
///         BadTag = "bad_tag",
///         Replay = "replay",
///         Expired = "expired",
///         HandshakeFailed = "handshake_failed",
///         BadMac1 = "bad_mac1",
///         BadMac2 = "bad_mac2",
///         HandshakeRateLimited = "handshake_rate_limited",
///     }
/// }
/// use overlay_proto::counters::Reason;
/// assert_eq!(Toy::from(overlay_proto::Error::CounterExhausted).name(), "expired");
/// assert_eq!(Toy::COUNT, 11);
/// ```
#[macro_export]
macro_rules! drop_reasons {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vattr:meta])* $variant:ident = $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vattr])* $variant, )+
        }

        impl $crate::counters::Reason for $name {
            const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];
            const COUNT: usize = Self::ALL.len();

            fn index(self) -> usize {
                self as usize
            }

            fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )+
                }
            }
        }

        const _: () = assert!(
            <$name as $crate::counters::Reason>::COUNT <= $crate::counters::MAX_REASONS,
            "more drop reasons than counters::MAX_REASONS"
        );

        impl From<$crate::Error> for $name {
            fn from(e: $crate::Error) -> Self {
                use $crate::Error as E;
                match e {
                    E::Truncated | E::BufferTooSmall => $name::Truncated,
                    E::BadVersion => $name::BadVersion,
                    E::UnknownType => $name::UnknownType,
                    E::BadFlags => $name::BadFlags,
                    E::BadTag => $name::BadTag,
                    E::Replay => $name::Replay,
                    E::CounterExhausted => $name::Expired,
                    E::Handshake | E::BadKey => $name::HandshakeFailed,
                }
            }
        }

        impl From<$crate::handshake_guard::GuardDrop> for $name {
            fn from(d: $crate::handshake_guard::GuardDrop) -> Self {
                use $crate::handshake_guard::GuardDrop as G;
                match d {
                    G::BadMac1 => $name::BadMac1,
                    G::BadMac2 => $name::BadMac2,
                    G::RateLimited => $name::HandshakeRateLimited,
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::{DropCounters, Reason};
    use crate::Error;
    use crate::handshake_guard::GuardDrop;

    crate::drop_reasons! {
        /// A reason set with the shared reasons in a different order than
        /// either core, and one of its own.
        enum Toy {
            HandshakeRateLimited = "handshake_rate_limited",
            Own = "own",
            Truncated = "truncated",
            BadVersion = "bad_version",
            UnknownType = "unknown_type",
            BadFlags = "bad_flags",
            BadTag = "bad_tag",
            Replay = "replay",
            Expired = "expired",
            HandshakeFailed = "handshake_failed",
            BadMac1 = "bad_mac1",
            BadMac2 = "bad_mac2",
        }
    }

    #[test]
    fn declared_order_is_index_order() {
        assert_eq!(Toy::COUNT, 12);
        for (i, r) in Toy::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Toy::Own.name(), "own");
    }

    #[test]
    fn errors_map_to_the_shared_reasons() {
        let cases = [
            (Error::Truncated, Toy::Truncated),
            (Error::BufferTooSmall, Toy::Truncated),
            (Error::BadVersion, Toy::BadVersion),
            (Error::UnknownType, Toy::UnknownType),
            (Error::BadFlags, Toy::BadFlags),
            (Error::BadTag, Toy::BadTag),
            (Error::Replay, Toy::Replay),
            (Error::CounterExhausted, Toy::Expired),
            (Error::Handshake, Toy::HandshakeFailed),
            (Error::BadKey, Toy::HandshakeFailed),
        ];
        for (e, r) in cases {
            assert_eq!(Toy::from(e), r, "{e:?}");
        }
        assert_eq!(Toy::from(GuardDrop::BadMac1), Toy::BadMac1);
        assert_eq!(Toy::from(GuardDrop::BadMac2), Toy::BadMac2);
        assert_eq!(Toy::from(GuardDrop::RateLimited), Toy::HandshakeRateLimited);
    }

    #[test]
    fn counters_serialize_by_name_in_declared_order() {
        let mut d = DropCounters::<Toy>::default();
        d.add(Toy::Own);
        d.add_n(Toy::BadTag, 3);
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.starts_with(r#"{"handshake_rate_limited":0,"own":1,"truncated":0,"#),
            "{json}"
        );
        assert!(json.contains(r#""bad_tag":3"#), "{json}");
        assert_eq!(d.total(), 4);
    }
}
