// libbnn from C++17: a small RAII wrapper written here, not part of the
// library.  Handles live in std::unique_ptr with deleters that call the
// matching *_free, and a failing call throws bnn::error, which carries the
// status name (bnn_status_string) and the detail text (bnn_last_error).
//
// The program trains a 2-32-3 network on three Gaussian blobs, reports its
// test accuracy, predicts a few points with uncertainty, and shows what a
// rejected call looks like.
#include <bnn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bnn {

class error : public std::runtime_error {
public:
    error(bnn_status status, const std::string &what)
        : std::runtime_error(what + ": " + bnn_status_string(status) + ": " +
                             bnn_last_error()),
          status_(status)
    {
    }
    bnn_status status() const noexcept { return status_; }

private:
    bnn_status status_;
};

// The message must be read on the failing thread before any other libbnn
// call fails, which constructing the exception right here guarantees.
inline void check(bnn_status s, const char *what)
{
    if (s != BNN_OK)
        throw error(s, what);
}

struct model_free {
    void operator()(bnn_model *p) const noexcept { bnn_model_free(p); }
};
struct guide_free {
    void operator()(bnn_guide *p) const noexcept { bnn_guide_free(p); }
};
struct optimizer_free {
    void operator()(bnn_optimizer *p) const noexcept { bnn_optimizer_free(p); }
};
using model_ptr = std::unique_ptr<bnn_model, model_free>;
using guide_ptr = std::unique_ptr<bnn_guide, guide_free>;
using optimizer_ptr = std::unique_ptr<bnn_optimizer, optimizer_free>;

// A model with its guide.  The guide points into the model, so the members
// are declared model first: they are destroyed in the reverse order.
class network {
public:
    network(const std::vector<size_t> &sizes, uint64_t seed)
    {
        bnn_model_config mc;
        bnn_model_config_init(&mc);
        mc.n_sizes = sizes.size();
        mc.layer_sizes = sizes.data(); // copied by bnn_model_create
        bnn_model *m = nullptr;
        check(bnn_model_create(&mc, &m), "bnn_model_create");
        model_.reset(m);

        bnn_guide_config gc;
        bnn_guide_config_init(&gc);
        gc.seed = seed;
        gc.init_sigma = 0.01f;
        bnn_guide *g = nullptr;
        check(bnn_guide_create(model_.get(), &gc, &g), "bnn_guide_create");
        guide_.reset(g);
    }

    bnn_guide *guide() const noexcept { return guide_.get(); }
    size_t inputs() const noexcept { return bnn_model_input_size(model_.get()); }
    size_t classes() const noexcept { return bnn_model_output_size(model_.get()); }

    // Mean class probabilities over `samples` sampled networks.
    std::vector<float> predict(const std::vector<float> &x, size_t samples,
                               uint64_t seed = 1) const
    {
        size_t n = x.size() / inputs();
        std::vector<float> p(n * classes());
        check(bnn_predict(guide_.get(), x.data(), n, samples, seed, p.data()),
              "bnn_predict");
        return p;
    }

    std::vector<bnn_prediction> predict_with_uncertainty(
        const std::vector<float> &x, const bnn_predict_config &cfg) const
    {
        size_t n = x.size() / inputs();
        std::vector<bnn_prediction> r(n);
        check(bnn_predict_with_uncertainty(guide_.get(), &cfg, x.data(), n,
                                           r.data(), sizeof(bnn_prediction),
                                           nullptr, nullptr),
              "bnn_predict_with_uncertainty");
        return r;
    }

private:
    model_ptr model_;
    guide_ptr guide_;
};

// SVI on a network's guide; the network must outlive the trainer.
class trainer {
public:
    trainer(network &net, size_t dataset_size, size_t max_batch, float lr)
    {
        bnn_optimizer_config oc;
        bnn_optimizer_config_init(&oc);
        oc.lr = lr;
        bnn_svi_config sc;
        bnn_svi_config_init(&sc);
        sc.dataset_size = dataset_size;
        sc.max_batch = max_batch;
        bnn_optimizer *o = nullptr;
        check(bnn_optimizer_create(net.guide(), &oc, &sc, &o),
              "bnn_optimizer_create");
        opt_.reset(o);
    }

    bnn_svi_stats step(const float *x, const int32_t *labels, size_t n)
    {
        bnn_svi_stats st;
        st.struct_size = sizeof st;
        check(bnn_svi_step(opt_.get(), x, labels, nullptr, n, &st),
              "bnn_svi_step");
        return st;
    }

private:
    optimizer_ptr opt_;
};

} // namespace bnn

namespace {

constexpr size_t kClasses = 3;

struct dataset {
    std::vector<float> x;
    std::vector<int32_t> y;
};

// splitmix64 plus Box-Muller: the same numbers with every C++ library.
struct host_rng {
    uint64_t s;
    uint64_t next()
    {
        uint64_t z = (s += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        return z ^ (z >> 31);
    }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }
    double normal()
    {
        double u = 1.0 - uniform(), v = uniform();
        return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
    }
};

// Three overlapping blobs around the corners of a triangle.
dataset make_blobs(host_rng &rng, size_t n)
{
    static const float centers[kClasses][2] = {{0.0f, 1.0f}, {-0.9f, -0.5f}, {0.9f, -0.5f}};
    dataset d;
    for (size_t i = 0; i < n; i++) {
        auto k = int32_t(rng.next() % kClasses);
        d.x.push_back(centers[k][0] + float(0.35 * rng.normal()));
        d.x.push_back(centers[k][1] + float(0.35 * rng.normal()));
        d.y.push_back(k);
    }
    return d;
}

} // namespace

int main()
{
    try {
        host_rng rng{7};
        const dataset train = make_blobs(rng, 1500), test = make_blobs(rng, 500);
        constexpr size_t batch = 50;

        bnn::network net({2, 32, kClasses}, 1);
        bnn::trainer svi(net, train.y.size(), batch, 0.01f);

        std::vector<size_t> order(train.y.size());
        std::iota(order.begin(), order.end(), size_t{0});
        std::vector<float> xb(batch * 2);
        std::vector<int32_t> yb(batch);
        for (int epoch = 1; epoch <= 10; epoch++) {
            for (size_t i = order.size() - 1; i > 0; i--)
                std::swap(order[i], order[rng.next() % (i + 1)]);
            double loss = 0.0;
            for (size_t b0 = 0; b0 < order.size(); b0 += batch) {
                size_t n = std::min(batch, order.size() - b0);
                for (size_t i = 0; i < n; i++) {
                    size_t j = order[b0 + i];
                    xb[2 * i] = train.x[2 * j];
                    xb[2 * i + 1] = train.x[2 * j + 1];
                    yb[i] = train.y[j];
                }
                loss += svi.step(xb.data(), yb.data(), n).loss;
            }
            std::printf("epoch %2d  -ELBO/N %.4f\n", epoch, loss / double(order.size()));
        }

        const auto probs = net.predict(test.x, 20);
        size_t correct = 0;
        for (size_t i = 0; i < test.y.size(); i++) {
            const float *p = &probs[i * kClasses];
            size_t best = 0;
            for (size_t c = 1; c < kClasses; c++)
                if (p[c] > p[best])
                    best = c;
            correct += best == size_t(test.y[i]);
        }
        std::printf("test accuracy: %.4f\n", double(correct) / double(test.y.size()));

        bnn_predict_config pc;
        bnn_predict_config_init(&pc);
        pc.rule = BNN_REFUSE_MAX_PROB;
        pc.threshold = 0.8f;
        // Two blob centres and a point between the blobs of classes 1 and 2.
        const std::vector<float> pts = {0.0f, 1.0f, -0.9f, -0.5f, 0.0f, -0.5f};
        const auto recs = net.predict_with_uncertainty(pts, pc);
        for (size_t i = 0; i < recs.size(); i++) {
            const auto &r = recs[i];
            std::printf("x=(%5.2f,%5.2f) label %d prob %.3f entropy %.4f MI %.4f refused %d\n",
                        double(pts[2 * i]), double(pts[2 * i + 1]), int(r.label),
                        double(r.prob), double(r.entropy), double(r.mutual_info),
                        int(r.refused));
        }

        // A label outside [0, classes) is rejected, and nothing changes.
        try {
            const int32_t bad = 5;
            svi.step(pts.data(), &bad, 1);
            std::printf("error: an out-of-range label was accepted\n");
            return 1;
        } catch (const bnn::error &e) {
            std::printf("caught expected error (%s): %s\n",
                        bnn_status_string(e.status()), e.what());
        }
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
