// The [gpu] suite's entry point: skips the whole suite (ctest's SKIP_RETURN_CODE) where no GPU exists. Listing
// (--list-test-names-only, which ctest's test discovery runs at build time) and --help need no GPU.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <cstdio>

namespace {
constexpr int kSkipped = 77;

bool only_lists(const Catch::ConfigData& config) {
    return config.listTests || config.listTags || config.listReporters || config.listTestNamesOnly ||
           config.showHelp;
}
}  // namespace

int main(int argc, char** argv) {
    Catch::Session session;
    if (int status = session.applyCommandLine(argc, argv); status != 0) {
        return status;
    }
    if (only_lists(session.configData())) {
        return session.run();
    }
    flashsci_plan_t plan = nullptr;
    flashsci_status_t status = flashsci_plan_create(&plan, FLASHSCI_BACKEND_CUDA);
    if (status == FLASHSCI_STATUS_NO_DEVICE) {
        std::printf("SKIPPED: [gpu] tests need a CUDA device: %s\n", flashsci_last_error());
        return kSkipped;
    }
    if (status != FLASHSCI_STATUS_SUCCESS) {
        std::printf("FAILED: cannot create a CUDA plan: %s\n", flashsci_last_error());
        return 1;
    }
    flashsci_plan_destroy(plan);
    return session.run();
}
