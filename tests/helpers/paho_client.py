#!/usr/bin/python3
"""A third-party MQTT 3.1.1 client for the integration tests: Eclipse paho-mqtt 1.6.1 (Debian's
python3-paho-mqtt, so it runs under /usr/bin/python3, not a pyenv python). Driven by
tests/helpers/third-party-mqtt.ts; prints one JSON object per line for every event:

  {"event": "connack", "rc": 0}
  {"event": "suback", "granted": [1, 128]}
  {"event": "message", "topic": "...", "payload": "...", "retain": false, "qos": 1}
  {"event": "puback", "index": 0}
  {"event": "disconnect", "rc": 7}

  paho_client.py --port P [--username U --password W] subscribe FILTER [FILTER ...]
      subscribes at QoS 1 and prints what arrives until it is terminated (or the connection ends)
  paho_client.py --port P [...] publish '[{"topic": T, "payload": S, "padTo": N, "qos": 1, "retain": false}]'
      publishes the messages in order (payload padded with spaces to N bytes when padTo is given)
      and exits 0 once every QoS 1 message is acknowledged; 3 when the connection ends first;
      4 when the CONNECT is refused
"""
import argparse
import json
import sys

import paho.mqtt.client as mqtt


def emit(**event):
    print(json.dumps(event), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--client-id", default="")
    sub = parser.add_subparsers(dest="command", required=True)
    subscribe = sub.add_parser("subscribe")
    subscribe.add_argument("filters", nargs="+")
    publish = sub.add_parser("publish")
    publish.add_argument("messages")
    args = parser.parse_args()

    client = mqtt.Client(client_id=args.client_id, clean_session=True, protocol=mqtt.MQTTv311)
    if args.username is not None:
        client.username_pw_set(args.username, args.password)
    state = {"done": False, "exit": 0, "pending": {}}

    def on_connect(_client, _userdata, _flags, rc):
        emit(event="connack", rc=rc)
        if rc != 0:
            state["done"], state["exit"] = True, 4
            return
        if args.command == "subscribe":
            client.subscribe([(topic_filter, 1) for topic_filter in args.filters])
        else:
            for index, message in enumerate(json.loads(args.messages)):
                payload = message.get("payload", "").encode("utf-8")
                if "padTo" in message:
                    payload = payload + b" " * (message["padTo"] - len(payload))
                qos = message.get("qos", 1)
                info = client.publish(message["topic"], payload, qos=qos, retain=message.get("retain", False))
                if qos > 0:
                    state["pending"][info.mid] = index
            if not state["pending"]:
                state["done"] = True

    def on_subscribe(_client, _userdata, _mid, granted_qos):
        emit(event="suback", granted=list(granted_qos))

    def on_message(_client, _userdata, msg):
        emit(
            event="message",
            topic=msg.topic,
            payload=msg.payload.decode("utf-8", "replace"),
            retain=bool(msg.retain),
            qos=msg.qos,
        )

    def on_publish(_client, _userdata, mid):
        # for QoS 1 paho calls this when the PUBACK arrives
        if mid in state["pending"]:
            emit(event="puback", index=state["pending"].pop(mid))
            if not state["pending"]:
                state["done"] = True

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_publish = on_publish

    client.connect(args.host, args.port, keepalive=30)
    while not state["done"]:
        rc = client.loop(timeout=0.1)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            emit(event="disconnect", rc=rc)
            if state["exit"] == 0:
                state["exit"] = 3
            break
    if state["exit"] == 0:
        client.disconnect()
    sys.exit(state["exit"])


if __name__ == "__main__":
    main()
