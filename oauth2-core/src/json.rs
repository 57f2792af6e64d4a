//! Reading a token's JSON (JOSE header, JWT payload) in one pass without
//! building a document: the members the checks need are borrowed from the
//! decoded bytes, every other value is only walked, and duplicate member
//! names are refused at every depth (parsers that keep the first and parsers
//! that keep the last would read different claims). Nothing is allocated
//! unless a name has escapes or an object has more than `INLINE` members.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Member names remembered on the stack per object before spilling.
const INLINE: usize = 24;

/// A member name, borrowed when it has no escapes.
pub struct Name<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Name)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The names seen so far in one object: refuses a second one.
#[derive(Default)]
pub struct Names<'de> {
    inline: [Option<Cow<'de, str>>; INLINE],
    n: usize,
    spill: Vec<Cow<'de, str>>,
}

impl<'de> Names<'de> {
    pub fn add<E: de::Error>(&mut self, name: Cow<'de, str>) -> Result<(), E> {
        let seen = self.inline[..self.n.min(INLINE)]
            .iter()
            .flatten()
            .chain(self.spill.iter())
            .any(|k| *k == name);
        if seen {
            return Err(E::custom("duplicate member name"));
        }
        if self.n < INLINE {
            self.inline[self.n] = Some(name);
        } else {
            self.spill.push(name);
        }
        self.n += 1;
        Ok(())
    }
}

/// What a value was, as far as the checks care. Objects and arrays are
/// walked (strictly) and summarized.
#[derive(Debug, PartialEq)]
pub enum Scalar<'de> {
    Str(Cow<'de, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Other,
}

/// Walks any value strictly; yields a summary of it.
pub struct Any;

impl<'de> DeserializeSeed<'de> for Any {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Any.deserialize(d)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element_seed(Any)?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut names = Names::default();
        while let Some(Name(k)) = a.next_key::<Name<'de>>()? {
            names.add(k.clone())?;
            a.next_value_seed(Any)?;
        }
        Ok(Scalar::Other)
    }
}

/// The members of an object that `names` lists, as scalars (objects and
/// arrays among them walked strictly and summarized), in the order of
/// `names`; every other member only walked; a duplicate name refused at
/// every depth.
pub struct Pick<'n, const N: usize>(pub &'n [&'n str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Pick<'_, N> {
    type Value = [Option<Scalar<'de>>; N];
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Pick<'_, N> {
    type Value = [Option<Scalar<'de>>; N];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = [const { None }; N];
        let mut names = Names::default();
        while let Some(Name(k)) = a.next_key::<Name<'de>>()? {
            let v = a.next_value_seed(Any)?;
            if let Some(i) = self.0.iter().position(|n| *n == k) {
                out[i] = Some(v);
            }
            names.add(k)?;
        }
        Ok(out)
    }
}

/// Is this JSON text valid with no duplicate member name at any depth?
pub fn strict(bytes: &[u8]) -> bool {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    Any.deserialize(&mut d).is_ok() && d.end().is_ok()
}

/// An array's strings, or one string, matched against a list: `Some(true)`
/// when one of them is in it. Walks the whole value strictly.
pub struct AnyOf<'p>(pub &'p [String]);

impl<'de> DeserializeSeed<'de> for AnyOf<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyOf<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(self.0.iter().any(|x| x == v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<bool, A::Error> {
        let mut hit = false;
        while let Some(v) = a.next_element_seed(Any)? {
            if let Scalar::Str(s) = v {
                hit |= self.0.iter().any(|x| *x == s);
            }
        }
        Ok(hit)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<bool, A::Error> {
        AnyVisitor.visit_map(a).map(|_| false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness() {
        assert!(strict(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#));
        assert!(!strict(br#"{"a":1,"a":2}"#));
        assert!(!strict(br#"{"a":{"b":1,"b":1}}"#));
        assert!(!strict(br#"{"a":[{"b":1,"b":1}]}"#));
        // the same name once escaped and once not is still the same name
        assert!(!strict(br#"{"a":1,"\u0061":2}"#));
        assert!(!strict(br#"{"a":1} x"#));
        // more names than the inline list holds
        let many: Vec<String> = (0..60).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(strict(format!("{{{}}}", many.join(",")).as_bytes()));
        let dup = format!("{{{},\"k59\":0}}", many.join(","));
        assert!(!strict(dup.as_bytes()));
    }

    #[test]
    fn picks() {
        let pick = |s: &'static str| {
            let mut d = serde_json::Deserializer::from_str(s);
            Pick(&["a", "c"]).deserialize(&mut d)
        };
        let [a, c] = pick(r#"{"c":"x","b":{"a":1},"a":7}"#).unwrap();
        assert_eq!(a, Some(Scalar::U64(7)));
        assert_eq!(c, Some(Scalar::Str("x".into())));
        assert_eq!(pick(r#"{"b":[1]}"#).unwrap(), [None, None]);
        assert!(pick(r#"{"a":1,"a":1}"#).is_err());
        assert!(pick(r#"{"b":{"x":1,"x":2}}"#).is_err());
        assert!(pick("[1]").is_err());
    }

    #[test]
    fn any_of() {
        let list = vec!["api".to_string(), "x".to_string()];
        let one = |s: &str| {
            let mut d = serde_json::Deserializer::from_str(s);
            AnyOf(&list).deserialize(&mut d)
        };
        assert!(one(r#""api""#).unwrap());
        assert!(!one(r#""apix""#).unwrap());
        assert!(one(r#"["z",1,"x"]"#).unwrap());
        assert!(!one(r#"["z",{"api":1}]"#).unwrap());
        assert!(!one("5").unwrap());
        assert!(one(r#"[{"a":1,"a":2},"api"]"#).is_err());
    }
}
