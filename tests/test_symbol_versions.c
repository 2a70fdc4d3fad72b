/* A binary built against the 0.1 bnn_model_config (which ended at
 * allocator) binds bnn_model_config_init@BNN_0: it must write exactly that
 * struct and nothing past it, and bnn_model_create must accept it.  New
 * links bind the default version, which writes the whole struct.  Loads
 * the shared library given as argv[1] and asks for each version by name. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "bnn.h"

typedef void (*init_fn)(bnn_model_config *);
typedef bnn_status (*create_fn)(const bnn_model_config *, bnn_model **);
typedef void (*free_fn)(bnn_model *);
typedef size_t (*count_fn)(const bnn_model *);

#define OLD_SIZE offsetof(bnn_model_config, n_layers)
#define GUARD 0xA5

static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s LIBBNN_SO\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    /* dlsym returns an object pointer; POSIX guarantees it converts. */
#define LOOKUP(var, name, ver)                                                    \
    do {                                                                          \
        void *p_ = (ver)[0] ? dlvsym(lib, name, (ver)) : dlsym(lib, name);        \
        memcpy(&(var), &p_, sizeof(var));                                         \
    } while (0)
    init_fn init_v0, init_v02, init_default;
    create_fn create;
    free_fn release;
    count_fn params;
    LOOKUP(init_v0, "bnn_model_config_init", "BNN_0");
    LOOKUP(init_v02, "bnn_model_config_init", "BNN_0.2");
    LOOKUP(init_default, "bnn_model_config_init", "");
    LOOKUP(create, "bnn_model_create", "");
    LOOKUP(release, "bnn_model_free", "");
    LOOKUP(params, "bnn_model_param_count", "");
    check(init_v0 && init_v02 && init_default && create && release && params,
          "both versions of bnn_model_config_init and the model functions resolve");
    if (!init_v0 || !init_v02 || !init_default || !create || !release || !params)
        return 1;
    check(init_default == init_v02, "the default version is BNN_0.2");
    check(init_v0 != init_v02, "BNN_0 is a separate implementation");

    /* The 0.1 struct, followed by guard bytes where the new fields would be. */
    unsigned char buf[sizeof(bnn_model_config) + 64];
    memset(buf, GUARD, sizeof buf);
    init_v0((bnn_model_config *)(void *)buf);
    int intact = 1;
    for (size_t i = OLD_SIZE; i < sizeof buf; i++)
        intact &= buf[i] == GUARD;
    check(intact, "BNN_0 writes nothing past the 0.1 struct");
    bnn_model_config old;
    memset(&old, 0, sizeof old);
    memcpy(&old, buf, OLD_SIZE);
    check(old.struct_size == OLD_SIZE, "BNN_0 sets struct_size to the 0.1 size");
    check(old.prior_sigma == 1.0f && old.noise_sigma == 1.0f && old.prior_pi == 0.5f,
          "BNN_0 fills the 0.1 defaults");

    /* An old caller's model: the library reads only its bytes. */
    const size_t sizes[] = {3, 4, 2};
    bnn_model_config *oldc = (bnn_model_config *)(void *)buf;
    oldc->n_sizes = 3;
    oldc->layer_sizes = sizes;
    bnn_model *m = NULL;
    check(create(oldc, &m) == BNN_OK && params(m) == 3 * 4 + 4 + 4 * 2 + 2,
          "bnn_model_create accepts the 0.1 struct");
    release(m);

    bnn_model_config full;
    memset(&full, GUARD, sizeof full);
    init_v02(&full);
    check(full.struct_size == sizeof full && full.n_layers == 0 && full.layers == NULL &&
              full.input_height == 0,
          "BNN_0.2 writes the whole struct");
    dlclose(lib);
    printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
