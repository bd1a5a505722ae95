//! A small in-memory cache shared by the service's use cases.

use std::collections::HashMap;
use std::sync::RwLock;

/// Entries one cache holds at most before it starts over.
const MAX_ENTRIES: usize = 10_000;

/// Values by string key, kept in memory and cleared when full: for things that are cheap to
/// read or compute again (tenant rows, unsealed secrets, parsed keys). Its `Debug` shows
/// only the number of entries, never keys or values.
pub struct BoundedCache<V>(RwLock<HashMap<String, V>>);

impl<V> Default for BoundedCache<V> {
    fn default() -> Self {
        Self(RwLock::new(HashMap::new()))
    }
}

impl<V> std::fmt::Debug for BoundedCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.read().map_or(0, |m| m.len());
        write!(f, "BoundedCache({n} entries)")
    }
}

impl<V: Clone> BoundedCache<V> {
    pub fn get(&self, key: &str) -> Option<V> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn put(&self, key: &str, value: V) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
            map.clear();
        }
        map.insert(key.to_string(), value);
    }

    pub fn remove(&self, key: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_over_when_full_and_hides_its_contents() {
        let c = BoundedCache::default();
        for i in 0..MAX_ENTRIES {
            c.put(&i.to_string(), "secret".to_string());
        }
        // Replacing an entry keeps the others; a new key past the bound starts over.
        c.put("0", "again".to_string());
        assert_eq!(c.get("1").as_deref(), Some("secret"));
        c.put("new", "value".to_string());
        assert_eq!(c.get("1"), None);
        assert_eq!(c.get("new").as_deref(), Some("value"));
        c.remove("new");
        assert_eq!(c.get("new"), None);
        assert!(!format!("{c:?}").contains("secret"));
    }
}
