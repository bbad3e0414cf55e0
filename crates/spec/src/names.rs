//! Closed sets of names a spec may use (families, presets, data sets, corpora, tokenizers,
//! optimisers): each is an enum declared once with [`named!`](crate::named), which gives it
//! the one string it is written as, the older spellings still read, its spec key for error
//! messages, serde (as that string) and `FromStr` (for command-line flags). No spec field
//! holds a free string that a `match` compares later.

use crate::SpecError;

/// A value of a closed set of names.
pub trait Named: Sized + Copy + 'static {
    /// The spec key it is written under, for error messages (`model.family`).
    const KEY: &'static str;
    /// Every value, in the order help texts list them.
    const ALL: &'static [Self];

    /// The name a spec writes.
    fn name(self) -> &'static str;

    /// Other spellings read as this value.
    fn aliases(self) -> &'static [&'static str];

    /// Every name, comma separated.
    fn names() -> String {
        Self::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The value written `name`, or an error naming the key and every name there is.
    fn from_name(name: &str) -> Result<Self, SpecError> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name() == name || v.aliases().contains(&name))
            .ok_or_else(|| {
                SpecError::invalid(Self::KEY, name, format!("use one of: {}", Self::names()))
            })
    }
}

/// Declares a closed set of names: `named! { /// doc  pub enum T under "key" { /// doc
/// Variant = "name" | "alias", ... } }`. Outer attributes (a `#[derive(Default)]` with a
/// `#[default]` variant) pass through.
#[macro_export]
macro_rules! named {
    (
        $(#[$meta:meta])*
        pub enum $T:ident under $key:literal {
            $( $(#[$vmeta:meta])* $V:ident = $name:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $T {
            $( $(#[$vmeta])* $V ),+
        }

        impl $crate::names::Named for $T {
            const KEY: &'static str = $key;
            const ALL: &'static [Self] = &[$(Self::$V),+];

            fn name(self) -> &'static str {
                match self {
                    $(Self::$V => $name),+
                }
            }

            fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(Self::$V => &[$($alias),*]),+
                }
            }
        }

        impl ::serde::Serialize for $T {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::names::Named::name(*self))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $T {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <String as ::serde::Deserialize>::deserialize(d)?;
                <$T as $crate::names::Named>::from_name(&name).map_err(|_| {
                    ::serde::de::Error::custom(format!(
                        "unknown {} `{name}`; use one of: {}",
                        $key,
                        <$T as $crate::names::Named>::names()
                    ))
                })
            }
        }

        impl ::std::str::FromStr for $T {
            type Err = $crate::SpecError;
            fn from_str(name: &str) -> Result<Self, Self::Err> {
                <$T as $crate::names::Named>::from_name(name)
            }
        }

        impl ::std::fmt::Display for $T {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::names::Named::name(*self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Named;

    crate::named! {
        /// A test set.
        #[derive(Default)]
        pub enum Colour under "paint.colour" {
            /// Red.
            #[default]
            Red = "red",
            /// Dark grey.
            DarkGrey = "dark_grey" | "dark-grey",
        }
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Paint {
        colour: Colour,
    }

    #[test]
    fn names_round_trip_and_aliases_read() {
        assert_eq!(Colour::default(), Colour::Red);
        assert_eq!("dark-grey".parse::<Colour>().unwrap(), Colour::DarkGrey);
        let toml = toml::to_string(&Paint {
            colour: Colour::DarkGrey,
        })
        .unwrap();
        assert_eq!(toml.trim(), "colour = \"dark_grey\"");
        assert_eq!(
            toml::from_str::<Paint>("colour = \"dark-grey\"").unwrap(),
            Paint {
                colour: Colour::DarkGrey
            }
        );
    }

    #[test]
    fn unknown_names_list_the_known_ones_under_their_key() {
        let err = "blue".parse::<Colour>().unwrap_err().to_string();
        assert!(
            err.contains("paint.colour") && err.contains("blue") && err.contains("red, dark_grey"),
            "{err}"
        );
        let err = toml::from_str::<Paint>("colour = \"blue\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown paint.colour `blue`") && err.contains("red, dark_grey"),
            "{err}"
        );
        assert_eq!(Colour::names(), "red, dark_grey");
    }
}
