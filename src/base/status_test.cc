#include "uiommufd/base/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace uiommufd {
namespace {

TEST(StatusTest, DefaultIsOkWithErrnoZero) {
  Status st;
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(st.error(), 0);
}

TEST(StatusTest, ErrorCarriesPositiveErrno) {
  Status st = Status::error(EINVAL);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.error(), EINVAL);
}

TEST(StatusTest, EqualityComparesErrno) {
  EXPECT_EQ(Status(), Status());
  EXPECT_EQ(Status::error(ENOMEM), Status::error(ENOMEM));
  EXPECT_NE(Status::error(ENOMEM), Status::error(EFAULT));
  EXPECT_NE(Status(), Status::error(ENOMEM));
}

TEST(StatusTest, ToStringOfOkIsOK) { EXPECT_EQ(Status().to_string(), "OK"); }

TEST(StatusTest, ToStringGivesNameAndDescription) {
  EXPECT_EQ(Status::error(EINVAL).to_string(), "EINVAL (Invalid argument)");
  EXPECT_EQ(Status::error(ENOENT).to_string(), "ENOENT (No such file or directory)");
}

TEST(StatusTest, ToStringOfUnknownErrnoStillReadable) {
  EXPECT_EQ(Status::error(4000).to_string().rfind("E? (", 0), 0u);
}

TEST(StatusDeathTest, ErrorOfZeroAborts) {
  EXPECT_DEATH({ (void)Status::error(0); }, "assertion failed");
}

TEST(StatusDeathTest, ErrorOfNegativeErrnoAborts) {
  EXPECT_DEATH({ (void)Status::error(-EINVAL); }, "assertion failed");
}

TEST(ErrnoNameTest, CoversEveryErrnoIommufdUses) {
  struct {
    int err;
    const char* name;
  } cases[] = {
      {EPERM, "EPERM"},         {ENOENT, "ENOENT"},   {EINTR, "EINTR"},           {EIO, "EIO"},
      {E2BIG, "E2BIG"},         {EBADF, "EBADF"},     {EAGAIN, "EAGAIN"},         {ENOMEM, "ENOMEM"},
      {EACCES, "EACCES"},       {EFAULT, "EFAULT"},   {EBUSY, "EBUSY"},           {EEXIST, "EEXIST"},
      {ENODEV, "ENODEV"},       {EINVAL, "EINVAL"},   {ENOSPC, "ENOSPC"},         {ERANGE, "ERANGE"},
      {ENOTTY, "ENOTTY"},       {ENAMETOOLONG, "ENAMETOOLONG"},                   {EOVERFLOW, "EOVERFLOW"},
      {EMSGSIZE, "EMSGSIZE"},   {EOPNOTSUPP, "EOPNOTSUPP"},                       {EADDRINUSE, "EADDRINUSE"},
      {ENXIO, "ENXIO"},         {ESRCH, "ESRCH"},
  };
  for (const auto& c : cases) EXPECT_STREQ(errno_name(c.err), c.name) << c.err;
}

TEST(ErrnoNameTest, AliasesUseKernelSpelling) {
  EXPECT_STREQ(errno_name(EDEADLK), "EDEADLOCK");
  EXPECT_STREQ(errno_name(EDEADLOCK), "EDEADLOCK");
  EXPECT_STREQ(errno_name(ENOTSUP), "EOPNOTSUPP");
  EXPECT_STREQ(errno_name(EWOULDBLOCK), "EAGAIN");
}

TEST(ErrnoNameTest, UnknownValuesAreEQuestionMark) {
  EXPECT_STREQ(errno_name(0), "E?");
  EXPECT_STREQ(errno_name(-1), "E?");
  EXPECT_STREQ(errno_name(4000), "E?");
}

}  // namespace
}  // namespace uiommufd
