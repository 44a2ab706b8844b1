#include "virtual_path.h"

#include <gtest/gtest.h>

namespace uiommufd::runtime {
namespace {

constexpr int kPid = 4242;
constexpr int kTid = 4250;

VirtualPath classify(const char* path) { return classify_path(normalize_path("/", path), kPid, kTid); }

TEST(NormalizePath, RemovesRepeatedSlashesDotsAndTrailingSlash) {
  EXPECT_EQ(normalize_path("/", "//dev/./iommu/"), "/dev/iommu");
}

TEST(NormalizePath, DotDotTakesOneComponentBack) {
  EXPECT_EQ(normalize_path("/", "/proc/self/task/../fail-nth"), "/proc/self/fail-nth");
  EXPECT_EQ(normalize_path("/", "/../dev/iommu"), "/dev/iommu");
}

TEST(NormalizePath, RelativeJoinsTheBase) {
  EXPECT_EQ(normalize_path("/proc/4242/task", "4250/fail-nth"), "/proc/4242/task/4250/fail-nth");
  EXPECT_EQ(normalize_path("/proc/4242", "/dev/iommu"), "/dev/iommu");
}

TEST(ClassifyPath, DevIommuIsTheIommufd) { EXPECT_EQ(classify("/dev/iommu").kind, VirtualKind::kIommufd); }

TEST(ClassifyPath, VfioContainerIsNotOurs) { EXPECT_EQ(classify("/dev/vfio/vfio").kind, VirtualKind::kNone); }

TEST(ClassifyPath, ThreadSelfFailNthIsTheCallingThread) {
  const VirtualPath vp = classify("/proc/thread-self/fail-nth");
  EXPECT_EQ(vp.kind, VirtualKind::kFailNth);
  EXPECT_EQ(vp.tid, kTid);
}

TEST(ClassifyPath, ProcessFailNthIsTheLeader) {
  EXPECT_EQ(classify("/proc/self/fail-nth").tid, kPid);
  EXPECT_EQ(classify("/proc/4242/fail-nth").tid, kPid);
  EXPECT_EQ(classify("/proc/4242/fail-nth").kind, VirtualKind::kFailNth);
}

TEST(ClassifyPath, TaskFailNthNamesTheThread) {
  EXPECT_EQ(classify("/proc/self/task/77/fail-nth").tid, 77);
  EXPECT_EQ(classify("/proc/4242/task/77/fail-nth").tid, 77);
}

TEST(ClassifyPath, OtherProcessesAreNotEmulated) {
  EXPECT_EQ(classify("/proc/1/fail-nth").kind, VirtualKind::kNone);
  EXPECT_EQ(classify("/proc/1/task/1/fail-nth").kind, VirtualKind::kNone);
}

TEST(ClassifyPath, MalformedIdsAreNotOurs) {
  EXPECT_EQ(classify("/proc/self/task/077/fail-nth").kind, VirtualKind::kNone);
  EXPECT_EQ(classify("/proc/self/task/x/fail-nth").kind, VirtualKind::kNone);
  EXPECT_EQ(classify("/proc/self/task/fail-nth").kind, VirtualKind::kNone);
}

TEST(ClassifyPath, OtherProcFilesAreNotOurs) {
  EXPECT_EQ(classify("/proc/self/status").kind, VirtualKind::kNone);
  EXPECT_EQ(classify("/proc/self/make-it-fail").kind, VirtualKind::kNone);
}

TEST(ClassifyPath, DebugfsRootAndFailEntriesAreDirectories) {
  EXPECT_EQ(classify("/sys/kernel/debug/").kind, VirtualKind::kDebugfsDir);
  EXPECT_EQ(classify("/sys/kernel/debug/failslab").kind, VirtualKind::kDebugfsDir);
  EXPECT_EQ(classify("/sys/kernel/debug/fail_iommufd").kind, VirtualKind::kDebugfsDir);
}

TEST(ClassifyPath, FilesInFailEntriesAreKnobs) {
  EXPECT_EQ(classify("/sys/kernel/debug/failslab/ignore-gfp-wait").kind, VirtualKind::kDebugfsKnob);
  EXPECT_EQ(classify("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem").kind, VirtualKind::kDebugfsKnob);
  EXPECT_EQ(classify("/sys/kernel/debug/fail_futex/verbose").kind, VirtualKind::kDebugfsKnob);
}

TEST(ClassifyPath, OtherDebugfsFilesAreNotOurs) {
  EXPECT_EQ(classify("/sys/kernel/debug/tracing/trace").kind, VirtualKind::kNone);
  EXPECT_EQ(classify("/sys/kernel/debug/failslab/a/b").kind, VirtualKind::kNone);
}

TEST(MayBeVirtualAbsolute, FiltersByPrefix) {
  EXPECT_TRUE(may_be_virtual_absolute("/dev/iommu"));
  EXPECT_TRUE(may_be_virtual_absolute("//proc/self/fail-nth"));
  EXPECT_TRUE(may_be_virtual_absolute("/sys/kernel/debug"));
  EXPECT_FALSE(may_be_virtual_absolute("/etc/passwd"));
  EXPECT_FALSE(may_be_virtual_absolute("dev/iommu"));
  EXPECT_FALSE(may_be_virtual_absolute(nullptr));
}

TEST(MayNameVirtualRelative, LastComponentFailNthOrIommu) {
  EXPECT_TRUE(may_name_virtual_relative("task/5/fail-nth"));
  EXPECT_TRUE(may_name_virtual_relative("fail-nth"));
  EXPECT_TRUE(may_name_virtual_relative("iommu"));
  EXPECT_FALSE(may_name_virtual_relative("fail-nth/x"));
  EXPECT_FALSE(may_name_virtual_relative("status"));
}

}  // namespace
}  // namespace uiommufd::runtime
