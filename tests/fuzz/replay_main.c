/* Replays fuzz inputs without libFuzzer, so that ordinary builds (gcc,
 * ASan + UBSan) run every fuzz target over its committed corpus as a
 * deterministic test: `fuzz_replay_<target> DIR_OR_FILE...` runs
 * LLVMFuzzerInitialize (if the target has one), then
 * LLVMFuzzerTestOneInput on every file given and every file of every
 * directory given (names in sorted order; hidden files skipped). A crash,
 * an abort or a sanitizer report fails the run; so does finding no input
 * at all, which would otherwise make a mistyped corpus path pass. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_target.h"

/* Weak: a target need not have one. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
const char *__ubsan_default_options(void);

/* UBSan only reports and carries on by default; a replay must fail on
 * the first report. UBSAN_OPTIONS in the environment still wins. */
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

struct path_list {
    char **paths;
    size_t count, capacity;
};

static void add_path(struct path_list *list, char *path)
{
    if (list->count == list->capacity) {
        list->capacity = list->capacity ? 2 * list->capacity : 64;
        list->paths = realloc(list->paths, list->capacity * sizeof *list->paths);
        if (!list->paths) {
            perror("replay");
            exit(1);
        }
    }
    list->paths[list->count++] = path;
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The regular files directly in `directory`, sorted by name. */
static void add_directory(struct path_list *list, const char *directory)
{
    DIR *dir = opendir(directory);
    if (!dir) {
        fprintf(stderr, "replay: cannot open %s\n", directory);
        exit(1);
    }
    size_t first = list->count;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        size_t length = strlen(directory) + 1 + strlen(entry->d_name) + 1;
        char *path = malloc(length);
        if (!path) {
            perror("replay");
            exit(1);
        }
        snprintf(path, length, "%s/%s", directory, entry->d_name);
        struct stat info;
        if (stat(path, &info) == 0 && S_ISREG(info.st_mode))
            add_path(list, path);
        else
            free(path);
    }
    closedir(dir);
    qsort(list->paths + first, list->count - first, sizeof *list->paths, compare_paths);
}

/* The whole file in a buffer of exactly its size, so that ASan catches a
 * target that reads one byte past its input. */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (!file || fseek(file, 0, SEEK_END) != 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        exit(1);
    }
    long length = ftell(file);
    rewind(file);
    uint8_t *data = malloc(length > 0 ? (size_t)length : 1);
    if (length < 0 || !data || fread(data, 1, (size_t)length, file) != (size_t)length) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        exit(1);
    }
    fclose(file);
    *size = (size_t)length;
    return data;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIRECTORY_OR_FILE...\n", argv[0]);
        return 2;
    }
    struct path_list inputs = { 0 };
    for (int i = 1; i < argc; i++) {
        struct stat info;
        if (stat(argv[i], &info) != 0) {
            fprintf(stderr, "replay: %s does not exist\n", argv[i]);
            return 1;
        }
        if (S_ISDIR(info.st_mode)) {
            add_directory(&inputs, argv[i]);
        } else {
            char *path = strdup(argv[i]);
            if (!path)
                return 1;
            add_path(&inputs, path);
        }
    }
    if (inputs.count == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (size_t i = 0; i < inputs.count; i++) {
        /* Named before it runs: a crash report follows the name. */
        fprintf(stderr, "replay: %s\n", inputs.paths[i]);
        size_t size;
        uint8_t *data = read_file(inputs.paths[i], &size);
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        free(inputs.paths[i]);
    }
    printf("replayed %zu inputs\n", inputs.count);
    free(inputs.paths);
    return 0;
}
