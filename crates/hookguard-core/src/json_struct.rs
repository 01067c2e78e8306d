//! Serde impls for this crate's JSON structs, written by two small `macro_rules!` instead of
//! serde's derive: the derive's proc macro (serde_derive, `syn`) sat on the critical path of a
//! cold build of the core.
//!
//! [`json_struct!`] generates what `#[derive(Serialize, Deserialize)]` generates for a plain
//! struct with named fields: the same JSON names, a visitor over a field-identifier enum (no
//! intermediate `Value`), unknown fields ignored, `duplicate field` on a repeated field, the
//! standard `missing field` error (a missing `Option` field is `None`, as with the derive),
//! positional parsing of a JSON array, and the same `serialize_struct` calls. Each field is
//! `name: "jsonName"` with optional options in parentheses:
//!
//! | options | serde attribute |
//! |---|---|
//! | none | (a required field) |
//! | `(default)` | `#[serde(default)]` |
//! | `(default, skip_none)` | `#[serde(default, skip_serializing_if = "Option::is_none")]` |
//! | `(default, with W)` | `#[serde(default, deserialize_with = "f")]`; `W(T)` a newtype deserialized by `f` |
//!
//! [`json_untagged!`] generates `#[serde(untagged)]` for an enum of newtype variants that ends
//! in `Other(serde_json::Value)`: the value is buffered as a `Value`, the variants are tried in
//! order, and `Other` holds the value when none fits. One difference from the derive, whose
//! buffer kept repeated keys: in a body with a repeated key the last copy wins, so a variant
//! that the derive refused (`duplicate field`) can match.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, Expected, Visitor};

/// What a missing field deserializes to: the `missing field` error, or `None` for an `Option`
/// (as the derive does).
pub(crate) fn missing_field<'de, V: Deserialize<'de>, E: Error>(field: &'static str) -> Result<V, E> {
    struct Missing<E>(&'static str, PhantomData<E>);

    impl<'de, E: Error> Deserializer<'de> for Missing<E> {
        type Error = E;
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, E> {
            Err(E::missing_field(self.0))
        }
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
            visitor.visit_none()
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct newtype_struct seq tuple
            tuple_struct map struct enum identifier ignored_any
        }
    }

    V::deserialize(Missing(field, PhantomData))
}

/// `struct Name with N elements`: what a JSON array read as the struct needed.
pub(crate) struct ExpectedLen(pub(crate) &'static str, pub(crate) usize);

impl Expected for ExpectedLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "struct {} with {} elements", self.0, self.1)
    }
}

/// `Serialize` and/or `Deserialize` for a struct with named fields (see the module docs).
macro_rules! json_struct {
    ($($trait:ident),+ for $name:ident $(<$g:ident>)? { $($fields:tt)* }) => {
        $crate::json_struct::json_struct!(@each [$($trait)+] $name [$($g)?] { $($fields)* });
    };
    (@each [$($trait:ident)+] $name:ident $generics:tt $fields:tt) => {
        $( $crate::json_struct::json_struct!(@$trait $name $generics $fields); )+
    };

    (@Serialize $name:ident [$($g:ident)?] {
        $($field:ident : $json:literal $(($($opt:tt)*))?),* $(,)?
    }) => {
        impl<$($g: ::serde::Serialize)?> ::serde::Serialize for $name<$($g)?> {
            fn serialize<__S: ::serde::Serializer>(&self, serializer: __S) -> Result<__S::Ok, __S::Error> {
                use ::serde::ser::SerializeStruct as _;
                let len = 0 $(
                    + usize::from(!$crate::json_struct::json_struct!(@skip &self.$field; $($($opt)*)?))
                )*;
                let mut state = serializer.serialize_struct(stringify!($name), len)?;
                $(
                    if $crate::json_struct::json_struct!(@skip &self.$field; $($($opt)*)?) {
                        state.skip_field($json)?;
                    } else {
                        state.serialize_field($json, &self.$field)?;
                    }
                )*
                state.end()
            }
        }
    };

    (@Deserialize $name:ident [$($g:ident)?] {
        $($field:ident : $json:literal $(($($opt:tt)*))?),* $(,)?
    }) => {
        const _: () = {
            /// A key: one of the fields (its index is the discriminant), or any other.
            #[allow(non_camel_case_types)]
            enum Field {
                $($field,)*
                __ignore,
            }

            struct FieldVisitor;

            impl<'de> ::serde::de::Visitor<'de> for FieldVisitor {
                type Value = Field;
                fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                    f.write_str("field identifier")
                }
                fn visit_u64<__E: ::serde::de::Error>(self, v: u64) -> Result<Field, __E> {
                    $( if v == Field::$field as u64 { return Ok(Field::$field); } )*
                    Ok(Field::__ignore)
                }
                fn visit_str<__E: ::serde::de::Error>(self, v: &str) -> Result<Field, __E> {
                    Ok(match v {
                        $($json => Field::$field,)*
                        _ => Field::__ignore,
                    })
                }
                fn visit_bytes<__E: ::serde::de::Error>(self, v: &[u8]) -> Result<Field, __E> {
                    match ::std::str::from_utf8(v) {
                        Ok(v) => ::serde::de::Visitor::visit_str(self, v),
                        Err(_) => Ok(Field::__ignore),
                    }
                }
            }

            impl<'de> ::serde::Deserialize<'de> for Field {
                #[inline]
                fn deserialize<__D: ::serde::Deserializer<'de>>(d: __D) -> Result<Self, __D::Error> {
                    d.deserialize_identifier(FieldVisitor)
                }
            }

            const FIELDS: &[&str] = &[$($json),*];

            struct StructVisitor<$($g)?>(::std::marker::PhantomData<fn() -> $name<$($g)?>>);

            impl<'de, $($g: ::serde::Deserialize<'de>)?> ::serde::de::Visitor<'de> for StructVisitor<$($g)?> {
                type Value = $name<$($g)?>;

                fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                    f.write_str(concat!("struct ", stringify!($name)))
                }

                #[inline]
                fn visit_seq<__A>(self, mut seq: __A) -> Result<Self::Value, __A::Error>
                where
                    __A: ::serde::de::SeqAccess<'de>,
                {
                    $(
                        let $field = match $crate::json_struct::json_struct!(@element seq; $($($opt)*)?) {
                            Some(v) => v,
                            None => $crate::json_struct::json_struct!(
                                @absent_element Field::$field, stringify!($name), FIELDS.len(); $($($opt)*)?
                            ),
                        };
                    )*
                    Ok($name { $($field),* })
                }

                #[inline]
                fn visit_map<__A>(self, mut map: __A) -> Result<Self::Value, __A::Error>
                where
                    __A: ::serde::de::MapAccess<'de>,
                {
                    $( let mut $field = None; )*
                    while let Some(key) = map.next_key::<Field>()? {
                        match key {
                            $(
                                Field::$field => {
                                    if $field.is_some() {
                                        return Err(<__A::Error as ::serde::de::Error>::duplicate_field($json));
                                    }
                                    $field = Some($crate::json_struct::json_struct!(@value map; $($($opt)*)?));
                                }
                            )*
                            Field::__ignore => {
                                map.next_value::<::serde::de::IgnoredAny>()?;
                            }
                        }
                    }
                    $(
                        let $field = match $field {
                            Some(v) => v,
                            None => $crate::json_struct::json_struct!(@absent $json; $($($opt)*)?),
                        };
                    )*
                    Ok($name { $($field),* })
                }
            }

            impl<'de, $($g: ::serde::Deserialize<'de>)?> ::serde::Deserialize<'de> for $name<$($g)?> {
                fn deserialize<__D: ::serde::Deserializer<'de>>(d: __D) -> Result<Self, __D::Error> {
                    d.deserialize_struct(stringify!($name), FIELDS, StructVisitor(::std::marker::PhantomData))
                }
            }
        };
    };

    // Whether a field is left out when serializing. (Each helper lists the options it accepts:
    // a misspelt option does not compile.)
    (@skip $v:expr; default, skip_none) => { ::std::option::Option::is_none($v) };
    (@skip $v:expr; $(default $(, with $with:ty)?)?) => { false };

    // A field's value in a map, an element of a sequence.
    (@value $map:ident; default, with $with:ty) => { $map.next_value::<$with>()?.0 };
    (@value $map:ident; $(default $(, skip_none)?)?) => { $map.next_value()? };
    (@element $seq:ident; default, with $with:ty) => { $seq.next_element::<$with>()?.map(|w| w.0) };
    (@element $seq:ident; $(default $(, skip_none)?)?) => { $seq.next_element()? };

    // A field absent from a map, a sequence too short.
    (@absent $json:literal; default $($opt:tt)*) => { ::std::default::Default::default() };
    (@absent $json:literal;) => { $crate::json_struct::missing_field($json)? };
    (@absent_element $field:path, $name:expr, $len:expr; default $($opt:tt)*) => {
        ::std::default::Default::default()
    };
    (@absent_element $field:path, $name:expr, $len:expr;) => {
        // The field's index in the sequence is its discriminant.
        return Err(::serde::de::Error::invalid_length(
            $field as usize,
            &$crate::json_struct::ExpectedLen($name, $len),
        ))
    };
}

/// `#[serde(untagged)]` for an enum of newtype variants ending in `Other(serde_json::Value)`
/// (see the module docs).
macro_rules! json_untagged {
    ($name:ident { $($variant:ident($ty:ty)),* $(,)? }) => {
        impl ::serde::Serialize for $name {
            fn serialize<__S: ::serde::Serializer>(&self, serializer: __S) -> Result<__S::Ok, __S::Error> {
                match self {
                    $(Self::$variant(v) => ::serde::Serialize::serialize(v, serializer),)*
                    Self::Other(v) => ::serde::Serialize::serialize(v, serializer),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<__D: ::serde::Deserializer<'de>>(d: __D) -> Result<Self, __D::Error> {
                let value = <::serde_json::Value as ::serde::Deserialize>::deserialize(d)?;
                $(
                    if let Ok(v) = <$ty as ::serde::Deserialize>::deserialize(&value) {
                        return Ok(Self::$variant(v));
                    }
                )*
                Ok(Self::Other(value))
            }
        }
    };
}

pub(crate) use {json_struct, json_untagged};

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{json, Value};

    /// `T` from JSON text, or serde_json's error message.
    fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The derive's `deserialize_with` shape: a newtype over the function's output.
    struct Upper(Option<String>);

    impl<'de> Deserialize<'de> for Upper {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(Upper(Option::<String>::deserialize(d)?.map(|s| s.to_uppercase())))
        }
    }

    #[derive(Debug, PartialEq)]
    struct T<D = Value> {
        id: String,
        kind: String,
        count: Option<u64>,
        note: Option<String>,
        shout: Option<String>,
        data: D,
    }

    json_struct! {
        Serialize, Deserialize for T<D> {
            id: "id",
            kind: "type",
            count: "count" (default),
            note: "noteText" (default, skip_none),
            shout: "shout" (default, with Upper),
            data: "data",
        }
    }

    #[derive(Debug, PartialEq)]
    struct One {
        a: u64,
    }

    #[derive(Debug, PartialEq)]
    struct Two {
        b: u64,
    }

    #[derive(Debug, PartialEq)]
    enum Either {
        One(One),
        Two(Two),
        Other(Value),
    }

    json_struct! { Serialize, Deserialize for One { a: "a" } }
    json_struct! { Serialize, Deserialize for Two { b: "b" } }
    json_untagged! { Either { One(One), Two(Two) } }

    #[test]
    fn names_defaults_and_unknown_fields() {
        let t: T = parse(r#"{"type":"k","id":"i","data":[1],"noteText":"n","x":{"y":[null]}}"#).unwrap();
        let want = T {
            id: "i".into(),
            kind: "k".into(),
            count: None,
            note: Some("n".into()),
            shout: None,
            data: json!([1]),
        };
        assert_eq!(t, want);
        // Keys with escapes are read unescaped.
        let t: T<u8> = parse(r#"{"\u0069d":"i","typ\u0065":"k","data":7,"count":3,"shout":"s"}"#).unwrap();
        assert_eq!(
            (t.id.as_str(), t.count, t.shout.as_deref(), t.data),
            ("i", Some(3), Some("S"), 7)
        );
        // A field's own name is not its JSON name.
        assert!(parse::<T>(r#"{"id":"i","kind":"k","data":1}"#).is_err());
        assert_eq!(
            parse::<T>(r#"{"id":"i","type":"k","data":1,"note":"n"}"#).unwrap().note,
            None
        );
    }

    #[test]
    fn missing_and_duplicate_fields_are_serdes_errors() {
        assert_eq!(
            parse::<T>(r#"{"type":"k","data":1}"#).unwrap_err(),
            "missing field `id` at line 1 column 21"
        );
        assert_eq!(
            parse::<T>(r#"{"id":"i","data":1}"#).unwrap_err(),
            "missing field `type` at line 1 column 19"
        );
        assert_eq!(
            parse::<T>(r#"{"id":"i","type":"k"}"#).unwrap_err(),
            "missing field `data` at line 1 column 21"
        );
        // A generic required field that is an `Option` is `None` when missing, as with the derive.
        assert_eq!(parse::<T<Option<u8>>>(r#"{"id":"i","type":"k"}"#).unwrap().data, None);
        assert_eq!(
            parse::<T>(r#"{"id":"i","id":"j","type":"k","data":1}"#).unwrap_err(),
            "duplicate field `id` at line 1 column 14"
        );
        assert!(parse::<T>(r#"{"id":"i","type":"k","data":1,"count":1,"count":null}"#).is_err());
        assert!(parse::<T>(r#"{"id":"i","type":"k","data":1,"count":"1"}"#).is_err());
        assert_eq!(
            parse::<T>("7").unwrap_err(),
            "invalid type: integer `7`, expected struct T at line 1 column 1"
        );
    }

    #[test]
    fn arrays_are_read_positionally() {
        let t: T = parse(r#"["i","k",1,"n","s",true]"#).unwrap();
        assert_eq!(
            (t.count, t.note.as_deref(), t.shout.as_deref(), t.data),
            (Some(1), Some("n"), Some("S"), json!(true))
        );
        assert_eq!(
            parse::<T>(r#"["i","k",null,null]"#).unwrap_err(),
            "invalid length 5, expected struct T with 6 elements at line 1 column 19"
        );
        assert_eq!(
            parse::<T>(r#"["i"]"#).unwrap_err(),
            "invalid length 1, expected struct T with 6 elements at line 1 column 5"
        );
        // A sequence too short for a generic `Option` field is still an error, as with the derive.
        assert!(parse::<T<Option<u8>>>(r#"["i","k"]"#).is_err());
    }

    #[test]
    fn skip_none_and_field_order_on_serialize() {
        let t = T {
            id: "i".into(),
            kind: "k".into(),
            count: None,
            note: None,
            shout: None,
            data: json!({"z":1}),
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"id":"i","type":"k","count":null,"shout":null,"data":{"z":1}}"#
        );
        let t = T {
            note: Some("n".into()),
            ..t
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"id":"i","type":"k","count":null,"noteText":"n","shout":null,"data":{"z":1}}"#
        );
        // Through a `Value` (a map serializer: the length must be right) and back.
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 6);
        let t2: T = serde_json::from_value(v).unwrap();
        assert_eq!(t2, T { shout: None, ..t });
    }

    #[test]
    fn untagged_tries_variants_in_order_then_other() {
        assert_eq!(parse::<Either>(r#"{"a":1,"b":2}"#).unwrap(), Either::One(One { a: 1 }));
        assert_eq!(parse::<Either>(r#"{"b":2}"#).unwrap(), Either::Two(Two { b: 2 }));
        assert_eq!(
            parse::<Either>(r#"{"a":"x"}"#).unwrap(),
            Either::Other(json!({"a":"x"}))
        );
        assert_eq!(parse::<Either>("[]").unwrap(), Either::Other(json!([])));
        assert_eq!(parse::<Either>("[3]").unwrap(), Either::One(One { a: 3 }));
        assert!(parse::<Either>("{").is_err());
        assert_eq!(serde_json::to_string(&Either::Two(Two { b: 2 })).unwrap(), r#"{"b":2}"#);
        assert_eq!(serde_json::to_string(&Either::Other(json!([1]))).unwrap(), "[1]");
        let v = serde_json::from_slice::<Either>(br#"{"b":5}"#).unwrap();
        assert_eq!(
            serde_json::from_value::<Either>(serde_json::to_value(&v).unwrap()).unwrap(),
            v
        );
    }

    /// `T` as serde's derive declares it (the unit tests have the derive through the
    /// dev-dependency on serde).
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Derived<D = Value> {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        count: Option<u64>,
        #[serde(rename = "noteText", default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, deserialize_with = "upper")]
        shout: Option<String>,
        data: D,
    }

    fn upper<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Upper::deserialize(d).map(|u| u.0)
    }

    #[test]
    fn same_as_the_derive() {
        fn both<D: Serialize + for<'de> Deserialize<'de>>(text: &str) {
            let ours = parse::<T<D>>(text).map(|t| serde_json::to_string(&t).unwrap());
            let derived = parse::<Derived<D>>(text)
                .map(|t| serde_json::to_string(&t).unwrap())
                .map_err(|e| e.replace("struct Derived", "struct T"));
            assert_eq!(ours, derived, "{text}");
        }
        for text in [
            r#"{"id":"i","type":"k","count":1,"noteText":"n","shout":"s","data":[1]}"#,
            r#"{"data":null,"shout":null,"noteText":null,"count":null,"type":"k","id":"i","more":{}}"#,
            r#"{"id":"i","type":"k","data":1,"shout":1}"#,
            r#"{"id":"i","type":"k","data":1,"shout":"a","shout":"b"}"#,
            r#"{"id":"i","type":"k","data":1,"noteText":"a","noteText":"b"}"#,
            r#"{"id":"i","type":"k","data":1,"data":2}"#,
            r#"{"id":"i","type":"k"}"#,
            r#"{"id":"i","data":1}"#,
            r#"{"type":"k","data":1}"#,
            r#"{"id":1,"type":"k","data":1}"#,
            r#"["i","k",1,"n","s",true]"#,
            r#"["i","k",1,"n","s"]"#,
            r#"["i","k"]"#,
            r#"["i"]"#,
            "[]",
            "{}",
            "null",
            "\"x\"",
        ] {
            both::<Value>(text);
            both::<Option<u8>>(text);
            both::<u8>(text);
        }
    }

    /// Serialize must match what the derive wrote: compare with a hand-built `Value`.
    #[test]
    fn serializes_through_any_serializer() {
        fn check<S: Serialize>(s: &S, want: Value) {
            assert_eq!(serde_json::to_value(s).unwrap(), want);
        }
        check(&One { a: 4 }, json!({"a":4}));
        check(&Either::One(One { a: 4 }), json!({"a":4}));
    }
}
