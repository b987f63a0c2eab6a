/* The heartbeat and the failure detector (cluster/heartbeat.h): beats keep
 * their pace; silence past the timeout declares the peer dead; the first
 * declaration wins and its action runs exactly once, even when several
 * threads declare at the same time; timeout 0 never declares by itself. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "clock.h"
#include "heartbeat.h"
#include "test_check.h"

struct deaths {
    atomic_int count;
    char reason[256];
};

static void on_dead(void *opaque, const char *reason)
{
    struct deaths *deaths = opaque;
    if (atomic_fetch_add(&deaths->count, 1) == 0)
        snprintf(deaths->reason, sizeof deaths->reason, "%s", reason);
}

static bool count_beat(void *opaque)
{
    atomic_fetch_add((atomic_int *)opaque, 1);
    return true;
}

static void test_sender_pace(void)
{
    atomic_int beats = 0;
    struct heartbeat_sender sender = { 0 };
    struct error err;
    CHECK(heartbeat_sender_start(&sender, 10, count_beat, &beats, &err) == 0, "sender starts");
    clock_sleep_ms(205);
    heartbeat_sender_stop(&sender);
    int counted = atomic_load(&beats);
    /* 10 ms apart over 205 ms: about 20; a loaded host may lose a few. */
    CHECK(counted >= 8 && counted <= 22, "beats in 205 ms at 10 ms: %d", counted);
    clock_sleep_ms(30);
    CHECK(atomic_load(&beats) == counted, "no beat after stop");
}

static void test_silence(void)
{
    struct deaths deaths = { 0 };
    struct failure_detector detector;
    failure_detector_init(&detector, 50, on_dead, &deaths);
    for (int i = 0; i < 10; i++) {
        clock_sleep_ms(10);
        failure_detector_heard(&detector, true);
        CHECK(!failure_detector_check(&detector), "heard every 10 ms: alive (step %d)", i);
    }
    CHECK(failure_detector_heartbeats(&detector) == 10, "10 heartbeats counted");
    clock_sleep_ms(80);
    CHECK(failure_detector_check(&detector), "80 ms of silence with a 50 ms timeout: dead");
    CHECK(atomic_load(&deaths.count) == 1, "the action ran once (%d)", atomic_load(&deaths.count));
    CHECK(strstr(deaths.reason, "no heartbeat from the peer") != NULL, "reason: %s", deaths.reason);
    failure_detector_heard(&detector, true);
    CHECK(failure_detector_check(&detector), "a beat after the decision does not undo it");
    failure_detector_destroy(&detector);
}

static void test_no_timeout(void)
{
    struct deaths deaths = { 0 };
    struct failure_detector detector;
    failure_detector_init(&detector, 0, on_dead, &deaths);
    clock_sleep_ms(30);
    CHECK(!failure_detector_check(&detector), "timeout 0: silence is not death");
    CHECK(failure_detector_declare_peer_dead(&detector, "operator: %s", "failover"), "an explicit declaration decides");
    char reason[64];
    CHECK(failure_detector_peer_dead(&detector, reason, sizeof reason) && strcmp(reason, "operator: failover") == 0,
          "reason kept: %s", reason);
    failure_detector_destroy(&detector);
}

struct racer {
    struct failure_detector *detector;
    int index;
    bool decided;
};

static void *declare(void *opaque)
{
    struct racer *racer = opaque;
    racer->decided = failure_detector_declare_peer_dead(racer->detector, "racer %d", racer->index);
    return NULL;
}

static void test_first_declaration_wins(void)
{
    struct deaths deaths = { 0 };
    struct failure_detector detector;
    failure_detector_init(&detector, 0, on_dead, &deaths);
    pthread_t threads[8];
    struct racer racers[8];
    for (int i = 0; i < 8; i++) {
        racers[i] = (struct racer){ &detector, i, false };
        pthread_create(&threads[i], NULL, declare, &racers[i]);
    }
    int decided = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        decided += racers[i].decided;
    }
    CHECK(decided == 1, "exactly one declaration decided (%d)", decided);
    CHECK(atomic_load(&deaths.count) == 1, "the action ran once (%d)", atomic_load(&deaths.count));
    char reason[64];
    failure_detector_peer_dead(&detector, reason, sizeof reason);
    CHECK(strcmp(reason, deaths.reason) == 0, "the kept reason is the deciding one (%s / %s)", reason, deaths.reason);
    failure_detector_destroy(&detector);
}

int main(void)
{
    test_sender_pace();
    test_silence();
    test_no_timeout();
    test_first_declaration_wins();
    return test_check_finish("heartbeat_test");
}
