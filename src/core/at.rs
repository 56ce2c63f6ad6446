//! `At<T>`: a value from a YAML file together with where it was written.
//!
//! It deserializes through `serde_saphyr::Spanned`, which knows the line and column; the
//! parser then [`Stamp`]s the file name into every `At` of the document, so every field of a
//! parsed spec knows its own `path:line:column` even after environment overrides from
//! another file have been merged in.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Deserializer};

use super::diag::Pos;

/// The file of an `At` between its deserialization and its stamp: shared, so a parse
/// allocates no name per value.
static UNSTAMPED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

/// Writes the name of the file a parsed document came from into every `At` inside it.
///
/// Structs implement it with [`stamp_fields!`], which names every field: a field added
/// to a struct and not to its stamp is a compile error, not a diagnostic without a file.
pub trait Stamp {
    fn stamp(&mut self, file: &Arc<str>);
}

impl<T: Stamp> Stamp for At<T> {
    fn stamp(&mut self, file: &Arc<str>) {
        self.pos.file = file.clone();
        self.value.stamp(file);
    }
}

impl<T: Stamp> Stamp for Option<T> {
    fn stamp(&mut self, file: &Arc<str>) {
        if let Some(v) = self {
            v.stamp(file);
        }
    }
}

impl<T: Stamp> Stamp for Box<T> {
    fn stamp(&mut self, file: &Arc<str>) {
        (**self).stamp(file);
    }
}

impl<T: Stamp> Stamp for Vec<T> {
    fn stamp(&mut self, file: &Arc<str>) {
        self.iter_mut().for_each(|v| v.stamp(file));
    }
}

impl<K, V: Stamp> Stamp for BTreeMap<K, V> {
    fn stamp(&mut self, file: &Arc<str>) {
        self.values_mut().for_each(|v| v.stamp(file));
    }
}

/// Values that hold no `At`.
macro_rules! stamp_nothing {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::core::at::Stamp for $t {
            fn stamp(&mut self, _: &std::sync::Arc<str>) {}
        })*
    };
}
pub(crate) use stamp_nothing;

stamp_nothing!(String, bool, u16, u32, f64, Text);

/// `impl Stamp` for a struct, naming every one of its fields (the destructuring has no
/// `..`, so the list cannot fall behind the struct).
macro_rules! stamp_fields {
    ($($t:ident { $($field:ident),* $(,)? })*) => {
        $(impl $crate::core::at::Stamp for $t {
            fn stamp(&mut self, file: &std::sync::Arc<str>) {
                let $t { $($field),* } = self;
                $($crate::core::at::Stamp::stamp($field, file);)*
            }
        })*
    };
}
pub(crate) use stamp_fields;

#[derive(Clone, Debug, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> At<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        At { value, pos }
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let loc = spanned.referenced;
        Ok(At { value: spanned.value, pos: Pos::new(UNSTAMPED.clone(), loc.line() as u32, loc.column() as u32) })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for At<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// A YAML scalar read as text: `value: false` and `value: 3` are variables too.
#[derive(Clone, Debug, PartialEq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number", "boolean"]})
    }
}
