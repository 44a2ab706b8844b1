#include "uiommufd/mm/page_identity.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "uiommufd/base/page.h"
#include "uiommufd/mm/mm.h"

namespace uiommufd {

namespace {

// /proc/self/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
constexpr std::uint64_t kPagemapPresent = std::uint64_t{1} << 63;
constexpr std::uint64_t kPagemapSwapped = std::uint64_t{1} << 62;
constexpr std::uint64_t kPagemapFileOrSharedAnon = std::uint64_t{1} << 61;
// Entries read per pread: 4 KiB of pagemap covers 2 MiB of address space.
constexpr std::size_t kPagemapBatch = 512;

bool parse_hex(const char*& p, const char* end, std::uint64_t* out) {
  std::uint64_t v = 0;
  const char* start = p;
  for (; p < end; ++p) {
    const char c = *p;
    unsigned d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      break;
    v = (v << 4) | d;
  }
  *out = v;
  return p != start;
}

bool parse_dec(const char*& p, const char* end, std::uint64_t* out) {
  std::uint64_t v = 0;
  const char* start = p;
  for (; p < end && *p >= '0' && *p <= '9'; ++p) v = v * 10 + (*p - '0');
  *out = v;
  return p != start;
}

bool expect(const char*& p, const char* end, char c) {
  if (p >= end || *p != c) return false;
  ++p;
  return true;
}

// Appends a run, merging it into the previous one when it continues it.
void push_run(std::vector<IdentityRun>* out, std::uint64_t addr, std::uint64_t npages,
              const PageIdentity& id) {
  if (!out->empty()) {
    IdentityRun& last = out->back();
    if (last.addr + (last.npages << kPageShift) == addr && last.first.same_space(id) &&
        last.first.offset + (last.npages << kPageShift) == id.offset) {
      last.npages += npages;
      return;
    }
  }
  out->push_back({addr, npages, id});
}

bool read_all(const char* path, std::string* text) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  text->clear();
  std::size_t used = 0;
  text->resize(16384);
  for (;;) {
    if (used == text->size()) text->resize(text->size() * 2);
    const ssize_t n = ::read(fd, text->data() + used, text->size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text->resize(used);
  return true;
}

}  // namespace

MapsSnapshot MapsSnapshot::take() { return take(Mm::local_ref()); }

MapsSnapshot MapsSnapshot::take(const Mm& mm) {
  char path[64];
  if (mm.remote())
    std::snprintf(path, sizeof(path), "/proc/%d/maps", static_cast<int>(mm.pid()));
  else
    std::snprintf(path, sizeof(path), "/proc/self/maps");
  std::string text;
  MapsSnapshot snap;
  if (read_all(path, &text)) snap = parse(text.data(), text.size());
  snap.pid_ = mm.remote() ? mm.pid() : 0;
  snap.private_tag_ = mm.phys_of(0);
  return snap;
}

MapsSnapshot MapsSnapshot::parse(const char* text, std::uint64_t size) {
  MapsSnapshot snap;
  snap.complete_ = true;
  const char* p = text;
  const char* const end = text + size;
  while (p < end) {
    const char* eol = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    if (eol == nullptr) eol = end;
    // "start-end perms offset major:minor inode [path]"
    FileMapping m{};
    std::uint64_t major_num = 0, minor_num = 0;
    const char* q = p;
    const bool ok = parse_hex(q, eol, &m.start) && expect(q, eol, '-') && parse_hex(q, eol, &m.end) &&
                    expect(q, eol, ' ') && eol - q >= 5 && q[4] == ' ';
    if (ok) {
      m.shared = q[3] == 's';
      q += 5;
      if (parse_hex(q, eol, &m.offset) && expect(q, eol, ' ') && parse_hex(q, eol, &major_num) &&
          expect(q, eol, ':') && parse_hex(q, eol, &minor_num) && expect(q, eol, ' ') &&
          parse_dec(q, eol, &m.ino) && m.ino != 0 && m.start < m.end) {
        // Anonymous memory has inode 0 and is private by address; only file-backed mappings are kept.
        m.dev = makedev(static_cast<unsigned>(major_num), static_cast<unsigned>(minor_num));
        snap.files_.push_back(m);
      }
    }
    p = eol + 1;
  }
  // The kernel lists mappings in address order; sort anyway so a lookup never depends on it.
  std::sort(snap.files_.begin(), snap.files_.end(),
            [](const FileMapping& a, const FileMapping& b) { return a.start < b.start; });
  return snap;
}

void MapsSnapshot::resolve_private(const FileMapping& m, std::uint64_t first_page, std::uint64_t last_page,
                                   std::vector<IdentityRun>* out) const {
  auto file_id = [&m](std::uint64_t page) {
    return PageIdentity{m.dev, m.ino, m.offset + ((page << kPageShift) - m.start)};
  };
  char path[64];
  if (pid_)
    std::snprintf(path, sizeof(path), "/proc/%d/pagemap", static_cast<int>(pid_));
  else
    std::snprintf(path, sizeof(path), "/proc/self/pagemap");
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    push_run(out, first_page << kPageShift, last_page - first_page + 1, file_id(first_page));
    return;
  }
  std::uint64_t entries[kPagemapBatch];
  for (std::uint64_t page = first_page; page <= last_page;) {
    const std::uint64_t n = std::min<std::uint64_t>(kPagemapBatch, last_page - page + 1);
    const ssize_t got = ::pread(fd, entries, n * sizeof(std::uint64_t), static_cast<off_t>(page * 8));
    const std::uint64_t valid = got > 0 ? static_cast<std::uint64_t>(got) / sizeof(std::uint64_t) : 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t e = k < valid ? entries[k] : 0;
      // The process's own copy: present but not a page of the file, or swapped out (file pages of a
      // private mapping are never swap entries).
      const bool copied = ((e & kPagemapPresent) && !(e & kPagemapFileOrSharedAnon)) || (e & kPagemapSwapped);
      const std::uint64_t p = page + k;
      push_run(out, p << kPageShift, 1,
               copied ? PageIdentity{0, 0, private_tag_ | (p << kPageShift)} : file_id(p));
    }
    page += n;
  }
  ::close(fd);
}

std::vector<IdentityRun> MapsSnapshot::resolve(std::uint64_t addr, std::uint64_t length) const {
  std::vector<IdentityRun> out;
  if (length == 0) return out;
  const std::uint64_t first_page = addr >> kPageShift;
  std::uint64_t last_addr = addr + (length - 1);
  if (last_addr < addr) last_addr = ~std::uint64_t{0};
  const std::uint64_t last_page = last_addr >> kPageShift;
  // The first file mapping that ends after the start of the range.
  auto it = std::upper_bound(files_.begin(), files_.end(), first_page << kPageShift,
                             [](std::uint64_t a, const FileMapping& m) { return a < m.end; });
  for (std::uint64_t page = first_page;;) {
    std::uint64_t seg_last = last_page;
    if (it != files_.end() && (it->start >> kPageShift) <= page) {
      seg_last = std::min(seg_last, (it->end >> kPageShift) - 1);
      if (it->shared) {
        push_run(&out, page << kPageShift, seg_last - page + 1,
                 {it->dev, it->ino, it->offset + ((page << kPageShift) - it->start)});
      } else {
        resolve_private(*it, page, seg_last, &out);
      }
      ++it;
    } else {
      if (it != files_.end()) seg_last = std::min(seg_last, (it->start >> kPageShift) - 1);
      push_run(&out, page << kPageShift, seg_last - page + 1, {0, 0, private_tag_ | (page << kPageShift)});
    }
    if (seg_last == last_page) break;
    page = seg_last + 1;
  }
  return out;
}

PageIdentity MapsSnapshot::identity(std::uint64_t addr) const { return resolve(addr, 1).front().first; }

bool MapsSnapshot::same_pages(std::uint64_t a, std::uint64_t b, std::uint64_t length) const {
  return same_pages(*this, a, *this, b, length);
}

bool MapsSnapshot::same_pages(const MapsSnapshot& sa, std::uint64_t a, const MapsSnapshot& sb,
                              std::uint64_t b, std::uint64_t length) {
  if (length == 0) return true;
  if (page_offset(a) != page_offset(b)) return false;
  if (a == b && &sa == &sb) return true;
  const std::vector<IdentityRun> ra = sa.resolve(a, length);
  const std::vector<IdentityRun> rb = sb.resolve(b, length);
  // Both cover the same number of pages; walk them in step, one overlap of two runs at a time. Within a
  // run identities advance by one page per page, so comparing the first page of each overlap is enough.
  std::size_t i = 0, j = 0;
  std::uint64_t di = 0, dj = 0;  // pages already consumed of ra[i], rb[j]
  while (i < ra.size() && j < rb.size()) {
    PageIdentity x = ra[i].first, y = rb[j].first;
    x.offset += di << kPageShift;
    y.offset += dj << kPageShift;
    if (x != y) return false;
    const std::uint64_t step = std::min(ra[i].npages - di, rb[j].npages - dj);
    di += step;
    dj += step;
    if (di == ra[i].npages) ++i, di = 0;
    if (dj == rb[j].npages) ++j, dj = 0;
  }
  return i == ra.size() && j == rb.size();
}

}  // namespace uiommufd
