// A C++17 application using libbnn through pkg-config only: RAII owners for
// the handles, the version check and a short prediction from an untrained
// guide.
#include <bnn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace {

struct model_deleter {
    void operator()(bnn_model *m) const { bnn_model_free(m); }
};
struct guide_deleter {
    void operator()(bnn_guide *g) const { bnn_guide_free(g); }
};

bool ok(bnn_status st, const char *what)
{
    if (st == BNN_OK)
        return true;
    std::fprintf(stderr, "%s: %s (%s)\n", what, bnn_status_string(st),
                 bnn_last_error());
    return false;
}

int predict_untrained()
{
    const size_t sizes[] = {3, 5, 4};
    bnn_model_config mc;
    bnn_model_config_init(&mc);
    mc.n_sizes = 3;
    mc.layer_sizes = sizes;
    bnn_model *raw_model = nullptr;
    if (!ok(bnn_model_create(&mc, &raw_model), "bnn_model_create"))
        return 1;
    std::unique_ptr<bnn_model, model_deleter> model(raw_model);
    if (bnn_model_param_count(model.get()) != 3 * 5 + 5 + 5 * 4 + 4)
        return 1;

    bnn_guide *raw_guide = nullptr;
    if (!ok(bnn_guide_create(model.get(), nullptr, &raw_guide),
            "bnn_guide_create"))
        return 1;
    std::unique_ptr<bnn_guide, guide_deleter> guide(raw_guide);

    std::vector<float> x = {0.5f, -1.0f, 2.0f, 0.0f, 0.25f, -0.75f};
    std::vector<float> probs(2 * 4);
    if (!ok(bnn_predict(guide.get(), x.data(), 2, 8, 3, probs.data()),
            "bnn_predict"))
        return 1;
    for (size_t i = 0; i < 2; i++) {
        float sum = 0.0f;
        for (size_t c = 0; c < 4; c++)
            sum += probs[i * 4 + c];
        if (std::fabs(sum - 1.0f) > 1e-4f) {
            std::fprintf(stderr, "probabilities sum to %g\n", sum);
            return 1;
        }
    }
    return 0;
}

} // namespace

int main()
{
    std::string_view v = bnn_version_string();
    std::printf("libbnn %.*s from C++17\n", static_cast<int>(v.size()),
                v.data());
    if (v != BNN_VERSION_STRING || bnn_version_number() != BNN_VERSION_NUMBER)
        return 1;
    return predict_untrained();
}
