//! JMS selectors: parsing arbitrary text never panics, and a selector that parses is
//! evaluated against arbitrary string properties without panicking.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use stampede_broker::selector::{Properties, Selector, Value};

struct Props(BTreeMap<String, String>);

impl Properties for Props {
    fn property(&self, name: &str) -> Option<Value<'_>> {
        self.0.get(name).map(|v| Value::Str(v.as_str()))
    }
}

fuzz_target!(|input: (&str, Vec<(String, String)>)| {
    let (text, props) = input;
    if let Ok(selector) = Selector::parse(text) {
        let props = Props(props.into_iter().collect());
        let _ = selector.evaluate(&props);
    }
});
