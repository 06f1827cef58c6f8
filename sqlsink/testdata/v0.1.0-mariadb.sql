/*M!999999\- enable the sandbox mode */ 

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!40101 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;
DROP TABLE IF EXISTS `kv`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `kv` (
  `key` varbinary(3072) NOT NULL,
  `value` longblob NOT NULL,
  `create_revision` bigint(20) NOT NULL,
  `mod_revision` bigint(20) NOT NULL,
  `version` bigint(20) NOT NULL,
  `lease` bigint(20) NOT NULL,
  PRIMARY KEY (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

LOCK TABLES `kv` WRITE;
/*!40000 ALTER TABLE `kv` DISABLE KEYS */;
INSERT INTO `kv` VALUES
('/apisix/consumers/jack','{\"username\":\"jack\"}',5,5,1,0),
('/apisix/routes/1','{\"uri\":\"/a2\"}',2,4,2,0),
('/apisix/ssls/1','x',8,8,1,0),
('/apisix/upstreams/1','{\"nodes\":{}}',7,7,1,0);
/*!40000 ALTER TABLE `kv` ENABLE KEYS */;
UNLOCK TABLES;
DROP TABLE IF EXISTS `kv_log`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `kv_log` (
  `revision` bigint(20) NOT NULL,
  `sub` int(11) NOT NULL,
  `deleted` tinyint(4) NOT NULL,
  `key` varbinary(3072) NOT NULL,
  `value` longblob NOT NULL,
  `create_revision` bigint(20) NOT NULL,
  `version` bigint(20) NOT NULL,
  `lease` bigint(20) NOT NULL,
  PRIMARY KEY (`revision`,`sub`),
  KEY `kv_log_key` (`key`(255),`revision`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

LOCK TABLES `kv_log` WRITE;
/*!40000 ALTER TABLE `kv_log` DISABLE KEYS */;
INSERT INTO `kv_log` VALUES
(2,0,0,'/apisix/routes/1','{\"uri\":\"/a\"}',2,1,0),
(3,0,0,'/apisix/routes/2','{\"uri\":\"/b\"}',3,1,2961580845928637820),
(4,0,0,'/apisix/routes/1','{\"uri\":\"/a2\"}',2,2,0),
(5,0,0,'/apisix/consumers/jack','{\"username\":\"jack\"}',5,1,0),
(6,0,1,'/apisix/routes/2','',0,0,0),
(7,0,0,'/apisix/upstreams/1','{\"nodes\":{}}',7,1,0),
(8,0,0,'/apisix/ssls/1','x',8,1,0);
/*!40000 ALTER TABLE `kv_log` ENABLE KEYS */;
UNLOCK TABLES;
DROP TABLE IF EXISTS `leases`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `leases` (
  `id` bigint(20) NOT NULL,
  `ttl` bigint(20) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

LOCK TABLES `leases` WRITE;
/*!40000 ALTER TABLE `leases` DISABLE KEYS */;
INSERT INTO `leases` VALUES
(2961580845928637820,600);
/*!40000 ALTER TABLE `leases` ENABLE KEYS */;
UNLOCK TABLES;
DROP TABLE IF EXISTS `meta`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `meta` (
  `name` varchar(64) NOT NULL,
  `value` bigint(20) NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

LOCK TABLES `meta` WRITE;
/*!40000 ALTER TABLE `meta` DISABLE KEYS */;
INSERT INTO `meta` VALUES
('applied_index',12),
('cluster_id',2101929663167088094),
('compact_revision',3),
('leader_term',2),
('revision',8),
('schema_version',1),
('writer_connection',33);
/*!40000 ALTER TABLE `meta` ENABLE KEYS */;
UNLOCK TABLES;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

