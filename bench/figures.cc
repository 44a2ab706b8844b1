#include "figures.h"

namespace uiommufd::bench {
namespace {

std::vector<Figure>& mutable_figures() {
  static std::vector<Figure> all;
  return all;
}

}  // namespace

FigureTable::FigureTable(std::initializer_list<Figure> figures) {
  mutable_figures().insert(mutable_figures().end(), figures.begin(), figures.end());
}

const std::vector<Figure>& figures() { return mutable_figures(); }

}  // namespace uiommufd::bench
