/**
 * Inserts into a cache whose keys come from outside (database rows, clients) without letting it grow
 * past `maxEntries`: the oldest entry goes first (a Map iterates in insertion order), and a key set again
 * moves to the newest end. Shared by the policy's caches so the bound is written once.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, maxEntries: number): void {
  map.delete(key);
  if (map.size >= maxEntries) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}
