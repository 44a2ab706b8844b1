#include "uiommufd/base/result.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

namespace uiommufd {
namespace {

TEST(ResultTest, ImplicitFromValueIsOk) {
  Result<int> r = 42;
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.error(), 0);
  EXPECT_TRUE(r.status().ok());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
}

TEST(ResultTest, ImplicitFromErrorStatusCarriesErrno) {
  Result<int> r = Status::error(ENOENT);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ENOENT);
  EXPECT_EQ(r.status(), Status::error(ENOENT));
}

TEST(ResultTest, ConvertsFromTypesTheValueIsConstructibleFrom) {
  Result<std::string> r = "abc";
  EXPECT_EQ(*r, "abc");
  Result<uint64_t> wide = 7;  // int → uint64_t
  EXPECT_EQ(*wide, 7u);
}

TEST(ResultTest, ArrowReachesMembers) {
  Result<std::string> r = std::string("hello");
  EXPECT_EQ(r->size(), 5u);
}

TEST(ResultTest, HoldsMoveOnlyValuesAndMovesThemOut) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
}

TEST(ResultTest, ValueOrReturnsValueWhenOk) {
  Result<int> r = 3;
  EXPECT_EQ(r.value_or(9), 3);
}

TEST(ResultTest, ValueOrReturnsFallbackOnError) {
  Result<int> r = Status::error(EIO);
  EXPECT_EQ(r.value_or(9), 9);
  Result<std::string> s = Status::error(EIO);
  EXPECT_EQ(std::move(s).value_or("fallback"), "fallback");
}

TEST(ResultTest, ValueCanBeModifiedInPlace) {
  Result<std::vector<int>> r = std::vector<int>{1, 2};
  r.value().push_back(3);
  r->push_back(4);
  EXPECT_EQ(r->size(), 4u);
}

TEST(ResultTest, SmallValuesStaySmall) {
  // A Result of a word-sized value must stay cheap to return.
  EXPECT_LE(sizeof(Result<uint64_t>), 16u);
  EXPECT_TRUE(std::is_trivially_copyable_v<Result<uint64_t>>);
}

TEST(ResultDeathTest, FromOkStatusAborts) {
  EXPECT_DEATH({ Result<int> r = Status(); (void)r; }, "assertion failed");
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  EXPECT_DEATH({
    Result<int> r = Status::error(EINVAL);
    (void)r.value();
  }, "assertion failed");
}

// TRY

Status check_positive(int v) { return v > 0 ? Status() : Status::error(EINVAL); }
Result<int> half(int v) {
  if (v % 2) return Status::error(ERANGE);
  return v / 2;
}

Status try_on_status(int v, bool* reached_end) {
  TRY(check_positive(v));
  *reached_end = true;
  return Status();
}

Result<int> try_on_result(int v) {
  int h = TRY(half(v));
  return h + 100;
}

Result<std::string> try_status_in_result_function(int v) {
  TRY(check_positive(v));
  return std::string("positive");
}

Status try_result_in_status_function(int v, int* out) {
  *out = TRY(half(v));
  return Status();
}

Result<std::unique_ptr<int>> make_box(int v) {
  TRY(check_positive(v));
  return std::make_unique<int>(v);
}

Result<int> try_on_move_only(int v) {
  std::unique_ptr<int> box = TRY(make_box(v));
  return *box;
}

TEST(TryTest, OnOkStatusContinues) {
  bool reached = false;
  EXPECT_TRUE(try_on_status(1, &reached).ok());
  EXPECT_TRUE(reached);
}

TEST(TryTest, OnErrorStatusReturnsIt) {
  bool reached = false;
  EXPECT_EQ(try_on_status(-1, &reached), Status::error(EINVAL));
  EXPECT_FALSE(reached);
}

TEST(TryTest, OnOkResultYieldsTheValue) {
  Result<int> r = try_on_result(10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 105);
}

TEST(TryTest, OnErrorResultReturnsItsStatus) { EXPECT_EQ(try_on_result(3).error(), ERANGE); }

TEST(TryTest, StatusErrorPropagatesIntoResultFunction) {
  EXPECT_EQ(try_status_in_result_function(0).error(), EINVAL);
  EXPECT_EQ(*try_status_in_result_function(1), "positive");
}

TEST(TryTest, ResultErrorPropagatesIntoStatusFunction) {
  int out = -1;
  EXPECT_EQ(try_result_in_status_function(5, &out), Status::error(ERANGE));
  EXPECT_EQ(out, -1);
  EXPECT_TRUE(try_result_in_status_function(8, &out).ok());
  EXPECT_EQ(out, 4);
}

TEST(TryTest, MovesMoveOnlyValuesOut) {
  EXPECT_EQ(*try_on_move_only(7), 7);
  EXPECT_EQ(try_on_move_only(-7).error(), EINVAL);
}

TEST(TryTest, LvalueArgumentIsCopiedNotMovedFrom) {
  Result<std::string> source = std::string("kept");
  auto use = [&]() -> Result<size_t> {
    std::string copy = TRY(source);
    return copy.size();
  };
  EXPECT_EQ(*use(), 4u);
  EXPECT_EQ(*source, "kept");
}

}  // namespace
}  // namespace uiommufd
