#include "uiommufd/lockdep/lock_class_key.h"

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

#include "validator.h"

namespace uiommufd::lockdep {

namespace {

struct Site {
  std::string_view file;  // a string literal: static storage
  unsigned line;
  unsigned column;
  std::string_view name;  // empty when unnamed
  auto operator<=>(const Site&) const = default;
};

struct SiteKeys {
  std::mutex mu;
  std::map<Site, LockClassKey*> keys;
  std::deque<std::string> names;     // storage for names made from file:line and for copied names
  std::deque<LockClassKey> storage;  // never shrinks: keys must outlive every lock
};

SiteKeys& site_keys() {
  // Leaked on purpose: locks in static objects may be constructed and destroyed around it.
  static SiteKeys* keys = new SiteKeys();
  return *keys;
}

}  // namespace

std::mutex& site_keys_mutex() { return site_keys().mu; }

LockClassKey& LockClassKey::for_site(const SourceSite& site, const char* name) {
  // Sites are compared by file name text, not pointer: the same inline function compiled into several
  // objects must yield one class. The name is part of the identity, so one helper that builds locks with
  // different names yields one class per name.
  Site s{site.file, site.line, site.column, name ? std::string_view(name) : std::string_view()};
  SiteKeys& k = site_keys();
  std::lock_guard lock(k.mu);
  auto it = k.keys.find(s);
  if (it != k.keys.end()) return *it->second;
  std::string& label = k.names.emplace_back(
      name ? std::string(name) : std::string(site.file) + ":" + std::to_string(site.line));
  s.name = name ? std::string_view(label) : std::string_view();
  LockClassKey& key = k.storage.emplace_back(label.c_str());
  k.keys.emplace(s, &key);
  return key;
}

}  // namespace uiommufd::lockdep
