// Factories of every pass; passes/Registry.cpp lists them by flag name.
#pragma once

#include <memory>

#include "passes/Pass.h"

namespace roformer::passes {

std::unique_ptr<Pass> createDcePass();
std::unique_ptr<Pass> createTopoSortPass();

}  // namespace roformer::passes
