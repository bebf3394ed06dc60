#include "coordinator/assignment.h"

#include <gtest/gtest.h>

namespace mkd::coordinator {
namespace {

using List = std::vector<std::string>;

TEST(Assignment, JobsShareEveryServingTeacherOfTheirModel) {
  std::vector<TeacherView> teachers = {{"t1:1", "vitB", 100, true},
                                       {"t2:1", "vitB", 100, true},
                                       {"t3:1", "vitS", 100, true},
                                       {"t4:1", "vitB", 100, false /* draining */}};
  std::vector<JobView> jobs = {{"a", "vitB", 1, 0, {}},
                               {"b", "vitB", 2, 0, {}},
                               {"c", "vitS", 1, 0, {}},
                               {"d", "vitL", 1, 0, {}}};
  auto out = AssignTeachers(teachers, jobs);
  EXPECT_EQ(out["a"], (List{"t1:1", "t2:1"}));
  EXPECT_EQ(out["b"], (List{"t1:1", "t2:1"}));
  EXPECT_EQ(out["c"], (List{"t3:1"}));
  EXPECT_TRUE(out["d"].empty()) << "no teacher serves vitL";
}

TEST(Assignment, LimitedJobsTakeTheLeastLoadedHeaviestFirst) {
  std::vector<TeacherView> teachers = {
      {"t1:1", "m", 100, true}, {"t2:1", "m", 100, true}, {"t3:1", "m", 300, true}};
  // Heaviest first: "big" (weight 3) takes the biggest teacher; each light
  // job then goes where the least weight per capacity sits.
  std::vector<JobView> jobs = {
      {"big", "m", 3, 1, {}}, {"x", "m", 1, 1, {}}, {"y", "m", 1, 1, {}}, {"z", "m", 1, 2, {}}};
  auto out = AssignTeachers(teachers, jobs);
  EXPECT_EQ(out["big"], (List{"t1:1"}));  // All empty: ties by address.
  EXPECT_EQ(out["x"], (List{"t2:1"}));
  EXPECT_EQ(out["y"], (List{"t3:1"}));  // 1/300 < 1/100 now on t2.
  EXPECT_EQ(out["z"].size(), 2u);
}

TEST(Assignment, TiesKeepWhatAJobHad) {
  std::vector<TeacherView> teachers = {{"t1:1", "m", 100, true}, {"t2:1", "m", 100, true}};
  auto out = AssignTeachers(teachers, {{"a", "m", 1, 1, {"t2:1"}}});
  EXPECT_EQ(out["a"], (List{"t2:1"}));
}

}  // namespace
}  // namespace mkd::coordinator
