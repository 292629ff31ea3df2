// Three murmur nodes behind HAProxy with the mesh bus: exactly-once delivery to 300
// clients, a node killed with SIGKILL, a rolling restart (test/lb/scenarios.ts).
import { runLbSuite } from './scenarios.js';

runLbSuite('mesh');
