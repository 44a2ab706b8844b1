// TextTable: rows of cells printed in aligned columns under a header, for the text format of a dump.
#pragma once

#include <string>
#include <vector>

namespace uiommufd::dump {

class TextTable {
 public:
  // A header per column; a header starting with '>' (the '>' is dropped) right-aligns its column.
  explicit TextTable(std::vector<std::string> headers);
  // Fewer cells than columns leave the rest empty; more are dropped.
  void row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  // Every line starts with `indent`; columns are two spaces apart; no trailing spaces.
  std::string render(const std::string& indent) const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace uiommufd::dump
